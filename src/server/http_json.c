/*
 * http_json.c - the JSON the HTTP feed sends: segments, event data, errors.
 */
#include "http_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mmk__jbuf_init(struct mmk__jbuf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
    b->err = 0;
}

void mmk__jbuf_free(struct mmk__jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Room for n more bytes plus the NUL. */
static int reserve(struct mmk__jbuf *b, size_t n)
{
    if (b->err)
        return -1;
    if (n > b->max || b->len > b->max - n) {
        b->err = -E2BIG;
        return -1;
    }
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->err = -ENOMEM;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void mmk__jbuf_raw(struct mmk__jbuf *b, const char *s, size_t n)
{
    if (reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void mmk__jbuf_lit(struct mmk__jbuf *b, const char *s)
{
    mmk__jbuf_raw(b, s, strlen(s));
}

void mmk__jbuf_u64(struct mmk__jbuf *b, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    mmk__jbuf_raw(b, t, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2; min = 0x80; cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3; min = 0x800; cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4; min = 0x10000; cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void mmk__jbuf_str(struct mmk__jbuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    mmk__jbuf_raw(b, "\"", 1);
    size_t i = 0;
    while (i < n && !b->err) {
        size_t run = i;
        /* Copy plain bytes in runs. */
        while (run < n && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            mmk__jbuf_raw(b, str + i, run - i);
            i = run;
            continue;
        }
        unsigned c = s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            mmk__jbuf_raw(b, esc, 2);
            i++;
        } else if (c == '\n') {
            mmk__jbuf_raw(b, "\\n", 2);
            i++;
        } else if (c == '\t') {
            mmk__jbuf_raw(b, "\\t", 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            mmk__jbuf_raw(b, esc, 6);
            i++;
        } else {
            size_t len = utf8_len(s + i, n - i);
            if (len) {
                mmk__jbuf_raw(b, str + i, len);
                i += len;
            } else {
                mmk__jbuf_raw(b, "\\ufffd", 6);
                i++;
            }
        }
    }
    mmk__jbuf_raw(b, "\"", 1);
}

static void field_u64(struct mmk__jbuf *b, const char *key, uint64_t v)
{
    mmk__jbuf_lit(b, key);
    mmk__jbuf_u64(b, v);
}

void mmk__jbuf_seg(struct mmk__jbuf *b, const struct mmk__http_seg *seg,
                   const struct mmk__http_event *ev)
{
    char mode[8];
    snprintf(mode, sizeof mode, "\"%04o\"", (unsigned)(seg->mode & 07777));
    mmk__jbuf_lit(b, "{\"name\":");
    mmk__jbuf_str(b, seg->name, strlen(seg->name));
    field_u64(b, ",\"size\":", seg->size);
    mmk__jbuf_lit(b, ",\"mode\":");
    mmk__jbuf_lit(b, mode);
    field_u64(b, ",\"owner\":", seg->uid);
    field_u64(b, ",\"group\":", seg->gid);
    field_u64(b, ",\"version\":", seg->version);
    field_u64(b, ",\"holders\":", seg->holders);
    field_u64(b, ",\"subscribers\":", seg->subscribers);
    if (ev && ev->kind == MMK__HTTP_WRITE) {
        field_u64(b, ",\"offset\":", ev->offset);
        field_u64(b, ",\"length\":", ev->length);
    }
    mmk__jbuf_lit(b, "}");
}

void mmk__jbuf_error(struct mmk__jbuf *b, const char *msg)
{
    mmk__jbuf_lit(b, "{\"error\":");
    mmk__jbuf_str(b, msg, strlen(msg));
    mmk__jbuf_lit(b, "}");
}
