/* shm_parse.c - libFuzzer target for the parsers of SysV shm's store: the
 * segment header (any user with write access to a segment can scribble on
 * it), the limits file and key-entry targets (ids). */
#include "shm.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mmk__shm_meta m;
    if (mmk__shm_hdr_parse(data, size, &m) == 0) {
        /* What parses must encode back to a header that parses the same. */
        unsigned char buf[MMK__SHM_HDR_BYTES];
        struct mmk__shm_meta again;
        mmk__shm_hdr_encode(&m, buf);
        if (mmk__shm_hdr_parse(buf, sizeof buf, &again) != 0 || again.id != m.id ||
            again.segsz != m.segsz || again.key != m.key)
            __builtin_trap();
        if (m.id < 0 || m.id >= MMK__SHM_MAX_IDS || m.segsz == 0)
            __builtin_trap();
    }
    struct shminfo lim;
    mmk__shm_limits_default(&lim);
    if (mmk__shm_limits_parse((const char *)data, size, &lim) == 0 &&
        (lim.shmmni < 1 || lim.shmmni > MMK__SHM_MAX_IDS || lim.shmmax < 1))
        __builtin_trap();
    char s[64];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    int id;
    if (mmk__shm_parse_id(s, &id) == 0 && (id < 0 || id >= MMK__SHM_MAX_IDS))
        __builtin_trap();
    return 0;
}
