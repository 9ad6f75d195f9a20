/*
 * http_parse.c - the request parser of mmkitd's HTTP feed: GET requests
 * without bodies, head at most MMK__HTTP_HEAD_MAX bytes.  Untrusted input:
 * every byte is checked, nothing is copied without a bound, and the parser
 * is a libFuzzer target (fuzz/http.c).
 *
 * Accepted: "METHOD SP TARGET SP HTTP/1.0|1.1 CRLF", then header lines
 * "Name: value CRLF" (LF alone is tolerated), then an empty line.  Only the
 * target's path, its "segment" query parameter and the Last-Event-ID
 * header matter; other headers are checked for form and skipped.  A request
 * with a body (Content-Length other than 0, Transfer-Encoding) is refused.
 */
#include "http.h"
#include "proto.h"

#include <errno.h>
#include <string.h>

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Case-insensitive compare of n bytes of a with the NUL-terminated b. */
static int name_is(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* The query string: only segment=NAME is understood; others are ignored. */
static int parse_query(const char *q, size_t n, struct mmk__http_req *r)
{
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t len = amp ? (size_t)(amp - q) : n;
        if (len > 8 && !memcmp(q, "segment=", 8)) {
            size_t vl = len - 8;
            if (!mmk__proto_name_ok(q + 8, vl))
                return -EBADMSG;
            memcpy(r->segment, q + 8, vl);
            r->segment[vl] = '\0';
            r->has_segment = 1;
        }
        q += len;
        n -= len;
        if (n) { /* skip the '&' */
            q++;
            n--;
        }
    }
    return 0;
}

static int parse_target(const char *t, size_t n, struct mmk__http_req *r)
{
    if (n == 0 || t[0] != '/')
        return -EBADMSG;
    const char *qm = memchr(t, '?', n);
    size_t plen = qm ? (size_t)(qm - t) : n;
    if (plen >= sizeof r->path)
        return -EBADMSG;
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 0x7f || t[i] == '#')
            return -EBADMSG;
    memcpy(r->path, t, plen);
    r->path[plen] = '\0';
    return qm ? parse_query(qm + 1, n - plen - 1, r) : 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EBADMSG;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* One line: [p, end of line) without its CR LF; returns the next line. */
static const char *line_end(const char *p, const char *end, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return NULL;
    *next = lf + 1;
    return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

int mmk__http_parse(const char *buf, size_t len, struct mmk__http_req *r)
{
    memset(r, 0, sizeof *r);
    const char *end = buf + (len > MMK__HTTP_HEAD_MAX ? MMK__HTTP_HEAD_MAX : len);
    const char *next, *le = line_end(buf, end, &next);
    if (!le)
        return len >= MMK__HTTP_HEAD_MAX ? -EMSGSIZE : 0;

    /* request line */
    const char *sp1 = memchr(buf, ' ', (size_t)(le - buf));
    if (!sp1 || sp1 == buf)
        return -EBADMSG;
    for (const char *c = buf; c < sp1; c++)
        if (!is_tchar((unsigned char)*c))
            return -EBADMSG;
    const char *tgt = sp1 + 1;
    const char *sp2 = memchr(tgt, ' ', (size_t)(le - tgt));
    if (!sp2)
        return -EBADMSG;
    size_t vlen = (size_t)(le - sp2 - 1);
    if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) && memcmp(sp2 + 1, "HTTP/1.0", 8)))
        return -EBADMSG;
    int e = parse_target(tgt, (size_t)(sp2 - tgt), r);
    if (e)
        return e;
    r->method = (sp1 - buf == 3 && !memcmp(buf, "GET", 3)) ? MMK__HTTP_GET : MMK__HTTP_OTHER;

    /* headers */
    for (const char *p = next;;) {
        le = line_end(p, end, &next);
        if (!le)
            return len >= MMK__HTTP_HEAD_MAX ? -EMSGSIZE : 0;
        if (le == p) { /* the empty line: done */
            r->head_len = (size_t)(next - buf);
            return 0;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return -EBADMSG;
        for (const char *c = p; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return -EBADMSG;
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *c = v; c < ve; c++)
            if ((unsigned char)*c < ' ' && *c != '\t')
                return -EBADMSG;
        size_t nl = (size_t)(colon - p);
        if (name_is(p, nl, "last-event-id")) {
            if (parse_u64(v, (size_t)(ve - v), &r->last_event_id))
                return -EBADMSG;
            r->has_last_event_id = 1;
        } else if (name_is(p, nl, "transfer-encoding")) {
            return -EBADMSG; /* no bodies */
        } else if (name_is(p, nl, "content-length")) {
            if (ve - v != 1 || *v != '0')
                return -EBADMSG;
        }
        p = next;
    }
}
