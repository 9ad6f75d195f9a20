/*
 * fuzz/evring.c - libFuzzer target for the event-ring reader
 * (src/evring.c): whatever bytes a ring holds, and wherever a reader stands
 * in it, checking and reading never crash or hang, never return a position
 * behind the one given, and report at most nslots events before catching up.
 *
 *   make fuzz            (clang; FUZZ_SECONDS seconds each)
 */
#include "evring.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    /* The first 8 bytes: where the reader stands; the rest: the ring. */
    uint64_t pos;
    memcpy(&pos, data, sizeof pos);
    size_t len = size - 8;
    uint64_t *map = calloc(1, len + 8); /* aligned like a mapping */
    if (!map)
        return 0;
    memcpy(map, data + 8, len);
    if (mmk__evring_check(map, len) == 0) {
        const struct mmk__evring_hdr *h = (const void *)map;
        uint64_t before = pos, got = 0;
        (void)mmk__evring_ready(map, pos);
        (void)mmk__evring_done(map, pos);
        for (;;) {
            mmk_seg_event ev;
            uint64_t at = pos;
            int r = mmk__evring_read(map, &pos, &ev);
            assert(r == 0 || r == 1 || r == -EOVERFLOW);
            if (r == 0)
                break;
            if (r == 1) {
                assert(pos == at + 1);
                got++;
            } else {
                assert(pos > at); /* an overrun always moves the reader on */
            }
            assert(got <= h->nslots);
            if (r < 0 && pos == before)
                break;
            before = pos;
        }
    }
    free(map);
    return 0;
}
