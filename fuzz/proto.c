/*
 * fuzz/proto.c - libFuzzer target for mmkitd's message parser (src/proto.c):
 * every byte string is fed to the request, reply and event parsers; what
 * parses must encode back to the same bytes and parse again the same.
 *
 *   make fuzz            (clang; FUZZ_TIME seconds, 60 by default)
 */
#include "proto.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

static uint8_t out[MMK__PROTO_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint16_t type;
    uint32_t id;
    mmk__proto_peek(data, size, &type, &id);

    struct mmk__req q;
    if (mmk__proto_parse_req(data, size, &q) == 0) {
        assert(q.namelen <= MMK_SEG_NAME_MAX && q.name[q.namelen] == '\0');
        int n = mmk__proto_put_req(out, &q);
        assert(n == (int)size && memcmp(out, data, size) == 0);
    }

    struct mmk__reply r;
    if (mmk__proto_parse_reply(data, size, &r) == 0) {
        int n = mmk__proto_put_reply(out, r.id, r.op, r.status, r.version);
        size_t pos = 0;
        mmk_seg_info info;
        for (uint32_t i = 0; i < r.count; i++) {
            assert(mmk__proto_next_info(&r, &pos, &info) == 0);
            assert(strlen(info.name) <= MMK_SEG_NAME_MAX);
            n = mmk__proto_add_info(out, (size_t)n, &info);
            assert(n > 0);
        }
        assert(pos == r.records_len);
        mmk__proto_set_more(out, r.more);
        assert(n == (int)size && memcmp(out, data, size) == 0);
    }

    mmk_seg_event ev;
    if (mmk__proto_parse_event(data, size, &ev) == 0) {
        int n = mmk__proto_put_event(out, &ev);
        assert(n == (int)size && memcmp(out, data, size) == 0);
    }
    return 0;
}
