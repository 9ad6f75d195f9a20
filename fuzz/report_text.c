/*
 * report_text.c - libFuzzer target for the report parser behind
 * `mmkit symbolize` (src/report_text.c): its input is a report pasted from
 * anywhere.  `make fuzz` builds it with clang and runs it.
 *
 * Checked on every input, besides the sanitizers' own checks:
 *  - with a resolver that knows nothing, the output is the input, byte for
 *    byte (no line is lost, added or changed);
 *  - with a resolver that names every frame, the output is NUL-terminated at
 *    the length reported, and every frame line that parses still parses
 *    after renaming, with the same index, path, offsets and build-id, while
 *    the lines of its inlined calls (one each) do not parse as frames.
 */
#include "report_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int know_nothing(void *ctx, const struct mmk__frame_key *k, struct mmk__frame_name *nm)
{
    (void)ctx;
    (void)k;
    (void)nm;
    return -1;
}

/* Names that depend on the key: with and without a line, long and short. */
static int name_all(void *ctx, const struct mmk__frame_key *k, struct mmk__frame_name *nm)
{
    static char longname[700];
    (void)ctx;
    memset(longname, 'f', sizeof longname - 1);
    switch (k->offset % 4) {
    case 0:
        nm->function = "culprit";
        nm->file = "/src/dir/culprit.c";
        nm->line = (int)(k->offset % 1000) + 1;
        break;
    case 1:
        nm->function = "sym@@VERSION_1";
        nm->function_offset = k->offset;
        break;
    case 2:
        nm->function = longname;
        nm->file = "x.c";
        nm->line = 7;
        nm->ninlined = (size_t)(k->offset >> 2) % (MMK__INLINED_MAX + 1);
        for (size_t i = 0; i < nm->ninlined; i++) {
            nm->inlined[i].function = i % 2 ? "callee" : NULL;
            nm->inlined[i].file = i % 3 ? "/a/b/inl.h" : NULL;
            nm->inlined[i].line = (int)i;
        }
        break;
    default:
        return -1;
    }
    return 0;
}

static void same_key(const struct mmk__frame_key *a, const struct mmk__frame_key *b)
{
    if (a->index != b->index || a->path_len != b->path_len ||
        memcmp(a->path, b->path, a->path_len) != 0 || a->offset != b->offset ||
        a->has_vaddr != b->has_vaddr || (a->has_vaddr && a->vaddr != b->vaddr) ||
        a->build_id_len != b->build_id_len ||
        memcmp(a->build_id, b->build_id, a->build_id_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t n;
    char *out = mmk__report_rewrite(in, size, know_nothing, NULL, &n);
    if (!out)
        return 0;
    if (n != size || memcmp(out, in, size) != 0 || out[n] != '\0')
        abort();
    free(out);

    out = mmk__report_rewrite(in, size, name_all, NULL, &n);
    if (!out)
        return 0;
    if (out[n] != '\0')
        abort();
    free(out);

    /* A frame line renamed parses back to the same key. */
    const char *nl = memchr(in, '\n', size);
    size_t len = nl ? (size_t)(nl - in) : size;
    struct mmk__frame_key k, k2;
    struct mmk__frame_name nm = { 0 };
    if (mmk__frame_parse(in, len, &k) == 0 && name_all(NULL, &k, &nm) == 0 &&
        memchr(k.key, '\n', k.key_len) == NULL) {
        char line[2048];
        size_t need = mmk__frame_format(line, sizeof line, &k, &nm);
        /* The frame's own line is the last; inlined calls' lines come
         * first, one per call, and are no frame lines. */
        const char *last = line;
        size_t lines = 0;
        for (const char *p = memchr(line, '\n', need); p; p = memchr(p + 1, '\n', need - (size_t)(p + 1 - line))) {
            struct mmk__frame_key ki;
            if (mmk__frame_parse(last, (size_t)(p - last), &ki) == 0)
                abort();
            last = p + 1;
            lines++;
        }
        if (need < sizeof line && lines != nm.ninlined)
            abort();
        if (need < sizeof line && (!nm.function || !memchr(nm.function, ' ', strlen(nm.function)))) {
            if (mmk__frame_parse(last, need - (size_t)(last - line), &k2) != 0)
                abort();
            same_key(&k, &k2);
        }
    }
    return 0;
}
