/*
 * report_text.c - parse and rewrite the frame lines of a fault report.
 *
 * The text is untrusted (a report pasted from another machine), so parsing
 * works on explicit lengths, never trusts a terminator, and bounds every
 * number it reads; anything that is not exactly a frame line is passed on
 * unchanged.  fuzz/report_text.c feeds it arbitrary input.
 */
#include "report_text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The last occurrence of needle (nlen bytes) in s[0, len), or NULL. */
static const char *find_last(const char *s, size_t len, const char *needle, size_t nlen)
{
    if (len < nlen)
        return NULL;
    for (size_t i = len - nlen + 1; i-- > 0;)
        if (memcmp(s + i, needle, nlen) == 0)
            return s + i;
    return NULL;
}

/* "0x" and 1 to 16 hex digits in s[0, len). */
static int parse_hex(const char *s, size_t len, uint64_t *out)
{
    if (len < 3 || len > 18 || s[0] != '0' || s[1] != 'x')
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 2; i < len; i++) {
        int d = hex_value(s[i]);
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* The key "PATH+0xOFF[ va=0xADDR][ id=HEX]" in s[0, len). */
static int parse_key(const char *s, size_t len, struct mmk__frame_key *k)
{
    k->build_id_len = 0;
    const char *id = find_last(s, len, " id=", 4);
    if (id) {
        const char *h = id + 4;
        size_t hl = (size_t)(s + len - h);
        if (hl == 0 || hl % 2 || hl / 2 > MMK__KEY_ID_MAX)
            return -EINVAL;
        for (size_t i = 0; i < hl; i += 2) {
            int a = hex_value(h[i]), b = hex_value(h[i + 1]);
            if (a < 0 || b < 0)
                return -EINVAL;
            k->build_id[i / 2] = (unsigned char)(a << 4 | b);
        }
        k->build_id_len = hl / 2;
        len = (size_t)(id - s);
    }
    k->has_vaddr = 0;
    const char *va = find_last(s, len, " va=", 4);
    if (va) {
        if (parse_hex(va + 4, (size_t)(s + len - (va + 4)), &k->vaddr) < 0)
            return -EINVAL;
        k->has_vaddr = 1;
        len = (size_t)(va - s);
    }
    const char *plus = find_last(s, len, "+0x", 3);
    if (!plus || plus == s || parse_hex(plus + 1, (size_t)(s + len - (plus + 1)), &k->offset) < 0)
        return -EINVAL;
    k->path = s;
    k->path_len = (size_t)(plus - s);
    return 0;
}

int mmk__frame_parse(const char *line, size_t len, struct mmk__frame_key *k)
{
    size_t i = 0;
    if (memchr(line, '\0', len))
        return -EINVAL; /* text only: a NUL would cut the line when written */
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    k->indent = i;
    if (i >= len || line[i] != '#')
        return -EINVAL;
    i++;
    unsigned n = 0;
    size_t digits = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9' && digits < 6) {
        n = n * 10 + (unsigned)(line[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0 || i >= len || line[i] != ' ')
        return -EINVAL;
    k->index = n;
    while (len > i && (line[len - 1] == ' ' || line[len - 1] == '\r'))
        len--;
    if (len == 0 || line[len - 1] != ']')
        return -EINVAL;
    const char *open = find_last(line + i, len - i, " [", 2);
    if (!open)
        return -EINVAL;
    k->key = open + 1;
    k->key_len = (size_t)(line + len - k->key);
    return parse_key(k->key + 1, k->key_len - 2, k);
}

static const char *last_component(const char *p, size_t len, size_t *out_len)
{
    size_t i = len;
    while (i > 0 && p[i - 1] != '/')
        i--;
    *out_len = len - i;
    return p + i;
}

static size_t format_frame(char *out, size_t cap, const struct mmk__frame_key *k,
                           const struct mmk__frame_name *nm);

/* snprintf at out + *used, keeping *used the length the whole text needs. */
static void append(char *out, size_t cap, size_t *used, int r)
{
    if (r > 0)
        *used += (size_t)r;
}

#define APPEND(...) \
    append(out, cap, &used, snprintf(used < cap ? out + used : NULL, used < cap ? cap - used : 0, __VA_ARGS__))

size_t mmk__frame_format(char *out, size_t cap, const struct mmk__frame_key *k,
                         const struct mmk__frame_name *nm)
{
    size_t used = 0;
    int ind = k->indent > 64 ? 64 : (int)k->indent;
    if (cap > 0)
        out[0] = '\0';
    for (size_t i = 0; i < nm->ninlined && i < MMK__INLINED_MAX; i++) {
        const char *fn = nm->inlined[i].function ? nm->inlined[i].function : "??";
        const char *file = nm->inlined[i].file ? nm->inlined[i].file : "??";
        size_t fl;
        file = last_component(file, strlen(file), &fl);
        APPEND("%*s#%u %.*s (%.*s:%d) (inlined)\n", ind, "", k->index, (int)strcspn(fn, "@"), fn,
               (int)fl, file, nm->inlined[i].line);
    }
    size_t tail = format_frame(used < cap ? out + used : NULL, used < cap ? cap - used : 0, k, nm);
    return used + tail;
}

static size_t format_frame(char *out, size_t cap, const struct mmk__frame_key *k,
                           const struct mmk__frame_name *nm)
{
    size_t objlen;
    const char *obj = last_component(k->path, k->path_len, &objlen);
    int keylen = k->key_len > 65536 ? 65536 : (int)k->key_len;
    int ind = k->indent > 64 ? 64 : (int)k->indent;
    /* "__libc_start_main@@GLIBC_2.34": the symbol version is noise here. */
    int fnl = nm->function ? (int)strcspn(nm->function, "@") : 0;
    int r;
    if (nm->function && nm->file && nm->line > 0) {
        size_t fl;
        const char *file = last_component(nm->file, strlen(nm->file), &fl);
        r = snprintf(out, cap, "%*s#%u %.*s (%.*s:%d) %.*s", ind, "", k->index, fnl, nm->function,
                     (int)fl, file, nm->line, keylen, k->key);
    } else if (nm->function) {
        r = snprintf(out, cap, "%*s#%u %.*s+0x%llx (%.*s) %.*s", ind, "", k->index, fnl, nm->function,
                     (unsigned long long)nm->function_offset, (int)objlen, obj, keylen, k->key);
    } else {
        r = snprintf(out, cap, "%*s#%u %.*s+0x%llx %.*s", ind, "", k->index, (int)objlen, obj,
                     (unsigned long long)k->offset, keylen, k->key);
    }
    return r < 0 ? 0 : (size_t)r;
}

struct text {
    char *p;
    size_t n, cap;
};

static int text_add(struct text *t, const char *s, size_t n)
{
    if (n > t->cap - t->n - 1) {
        size_t cap = t->cap;
        while (n > cap - t->n - 1) {
            if (cap > ((size_t)1 << 40))
                return -ENOMEM;
            cap *= 2;
        }
        char *p = realloc(t->p, cap);
        if (!p)
            return -ENOMEM;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
    return 0;
}

char *mmk__report_rewrite(const char *in, size_t len, mmk__resolve_fn resolve, void *ctx,
                          size_t *out_len)
{
    struct text t = { malloc(len + 256), 0, len + 256 };
    if (!t.p) {
        errno = ENOMEM;
        return NULL;
    }
    t.p[0] = '\0';
    char small[512];
    size_t i = 0;
    int r = 0;
    while (i < len && r == 0) {
        const char *nl = memchr(in + i, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - (in + i)) : len - i;
        const char *line = in + i;
        struct mmk__frame_key k;
        struct mmk__frame_name nm = { 0 };
        if (mmk__frame_parse(line, ll, &k) == 0 && resolve(ctx, &k, &nm) == 0) {
            size_t need = mmk__frame_format(small, sizeof small, &k, &nm);
            if (need < sizeof small) {
                r = text_add(&t, small, need);
            } else {
                char *big = malloc(need + 1);
                if (!big) {
                    r = -ENOMEM;
                    break;
                }
                mmk__frame_format(big, need + 1, &k, &nm);
                r = text_add(&t, big, need);
                free(big);
            }
        } else {
            r = text_add(&t, line, ll);
        }
        if (r == 0 && nl)
            r = text_add(&t, "\n", 1);
        i += ll + (nl ? 1 : 0);
    }
    if (r < 0) {
        free(t.p);
        errno = ENOMEM;
        return NULL;
    }
    if (out_len)
        *out_len = t.n;
    return t.p;
}
