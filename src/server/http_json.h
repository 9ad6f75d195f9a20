/*
 * http_json.h - a bounded JSON writer for the HTTP feed (internal).
 *
 * Output goes into a growing buffer that never passes its limit: a write
 * that would pass it, or a failed allocation, sets err and every later write
 * is ignored, so callers check once at the end.  Strings are escaped so the
 * result is always one line of valid JSON in UTF-8: quote, backslash and
 * control characters are escaped, and bytes that are not valid UTF-8 become
 * U+FFFD.
 */
#ifndef MMK_SERVER_HTTP_JSON_H
#define MMK_SERVER_HTTP_JSON_H

#include "http.h"

#include <stddef.h>
#include <stdint.h>

struct mmk__jbuf {
    char *p;        /* NUL-terminated while err == 0 */
    size_t len, cap, max;
    int err;        /* 0, -ENOMEM or -E2BIG (limit) */
};

void mmk__jbuf_init(struct mmk__jbuf *b, size_t max);
void mmk__jbuf_free(struct mmk__jbuf *b);
void mmk__jbuf_raw(struct mmk__jbuf *b, const char *s, size_t n);
void mmk__jbuf_lit(struct mmk__jbuf *b, const char *s);
/* s[0..n) as a quoted JSON string. */
void mmk__jbuf_str(struct mmk__jbuf *b, const char *s, size_t n);
void mmk__jbuf_u64(struct mmk__jbuf *b, uint64_t v);
/* A segment: {"name":..,"size":..,"mode":"0644","owner":..,"group":..,
 * "version":..,"holders":..,"subscribers":..}; with ev, an event's data:
 * the same object plus "offset" and "length" for a write. */
void mmk__jbuf_seg(struct mmk__jbuf *b, const struct mmk__http_seg *seg,
                   const struct mmk__http_event *ev);
/* {"error":msg} */
void mmk__jbuf_error(struct mmk__jbuf *b, const char *msg);

#endif
