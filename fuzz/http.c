/* fuzz/http.c - libFuzzer target for the HTTP feed's request parser. */
#include "server/http.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct mmk__http_req r;
    int e = mmk__http_parse((const char *)data, size, &r);
    if (e == 0 && r.head_len) {
        assert(r.head_len <= size && r.head_len <= MMK__HTTP_HEAD_MAX);
        assert(r.path[0] == '/' && strlen(r.path) < sizeof r.path);
        assert(!r.has_segment || strlen(r.segment) <= 255);
    }
    return 0;
}
