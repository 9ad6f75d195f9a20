/*
 * http_route.c - what each request gets: the page, the segment list, one
 * segment, an event stream, or an error status with a JSON body.
 */
#include "http_int.h"
#include "http_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The page allows nothing from elsewhere: its script and style are inline,
 * it talks only to this server, and it has no images but its own SVG. */
static const char page_policy[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

#define SEGMENTS_JSON_MAX (64u << 20)

bool mmk__http_visible(const struct mmk__http *h, const struct mmk__http_seg *seg)
{
    return (h->cfg.flags & MMK__HTTP_ALL) || (seg->mode & S_IROTH);
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *r, const char *type)
{
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

enum MHD_Result mmk__http_answer(struct MHD_Connection *conn, unsigned status,
                                 const char *type, const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    return queue(conn, status, r, type);
}

enum MHD_Result mmk__http_error(struct MHD_Connection *conn, unsigned status,
                                const char *msg)
{
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, 1024);
    mmk__jbuf_error(&b, msg);
    mmk__jbuf_raw(&b, "\n", 1);
    enum MHD_Result ok = b.err ? MHD_NO
        : mmk__http_answer(conn, status, "application/json", b.p, b.len);
    mmk__jbuf_free(&b);
    return ok;
}

/* Hand a finished JSON buffer to libmicrohttpd (which frees it). */
static enum MHD_Result answer_json(struct MHD_Connection *conn, struct mmk__jbuf *b,
                                   uint64_t seq)
{
    if (b->err) {
        mmk__jbuf_free(b);
        return mmk__http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                               "listing too large or out of memory");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(b->len, b->p, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        mmk__jbuf_free(b);
        return MHD_NO;
    }
    /* The event the answer is current with: GET /events?since=N resumes
     * right after it, so a page loses nothing between the two requests. */
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, seq);
    MHD_add_response_header(r, "Mmkit-Event-Id", id);
    return queue(conn, MHD_HTTP_OK, r, "application/json");
}

struct list_ctx {
    struct mmk__http *h;
    struct mmk__jbuf *b;
    unsigned n;
};

static int list_one(void *arg, const struct mmk__http_seg *seg)
{
    struct list_ctx *c = arg;
    if (!mmk__http_visible(c->h, seg))
        return 0;
    if (c->n++)
        mmk__jbuf_raw(c->b, ",", 1);
    mmk__jbuf_seg(c->b, seg, NULL);
    return c->b->err;
}

static enum MHD_Result get_segments(struct mmk__http *h, struct MHD_Connection *conn)
{
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, SEGMENTS_JSON_MAX);
    struct list_ctx c = { h, &b, 0 };
    mmk__jbuf_raw(&b, "[", 1);
    int r = h->src.each ? h->src.each(h->src.ctx, list_one, &c) : 0;
    mmk__jbuf_raw(&b, "]\n", 2);
    if (r < 0 && !b.err)
        b.err = r;
    return answer_json(conn, &b, mmk__feed_last_seq(h->feed));
}

static enum MHD_Result get_segment(struct mmk__http *h, struct MHD_Connection *conn,
                                   const char *name)
{
    struct mmk__http_seg seg;
    if (!h->src.find || h->src.find(h->src.ctx, name, &seg) < 0 ||
        !mmk__http_visible(h, &seg))
        return mmk__http_error(conn, MHD_HTTP_NOT_FOUND, "no such segment");
    struct mmk__jbuf b;
    mmk__jbuf_init(&b, MMK__HTTP_EVENT_MAX);
    mmk__jbuf_seg(&b, &seg, NULL);
    mmk__jbuf_raw(&b, "\n", 1);
    return answer_json(conn, &b, mmk__feed_last_seq(h->feed));
}

/* A decimal event id: digits only, no sign, no overflow. */
static int parse_id(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static enum MHD_Result get_events(struct mmk__http *h, struct MHD_Connection *conn)
{
    const char *filter = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "segment");
    const char *since = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "since");
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    uint64_t id = 0;
    /* The browser sends Last-Event-ID when it reconnects; it wins over the
     * ?since= the page opened the stream with. */
    const char *from = last && *last ? last : since;
    if (filter && !*filter)
        return mmk__http_error(conn, MHD_HTTP_BAD_REQUEST, "empty segment name");
    if (from && parse_id(from, &id) < 0)
        return mmk__http_error(conn, MHD_HTTP_BAD_REQUEST, "bad event id");
    return mmk__sse_start(h, conn, filter, from != NULL, id);
}

struct header_sum {
    size_t bytes;
};

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct header_sum *s = cls;
    (void)kind;
    s->bytes += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " CRLF */
    return MHD_YES;
}

enum MHD_Result mmk__http_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct mmk__http *h = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    /* libmicrohttpd calls once the headers are in, then once per piece of
     * body, then once more.  A request without a body is answered on the
     * second call (the connection can then stay open for the next one);
     * one with a body, on the first: nothing here takes a body, and
     * answering before it is read makes libmicrohttpd close the connection
     * instead of reading it. */
    static int marker;
    const char *clen = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_LENGTH);
    bool has_body = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_TRANSFER_ENCODING) ||
        (clen && strcmp(clen, "0") != 0);
    if (*req_cls == NULL && !has_body) {
        *req_cls = &marker;
        return MHD_YES;
    }
    struct header_sum sum = { strlen(method) + strlen(url) + 12 };
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, &sum);
    if (sum.bytes > MMK__HTTP_HEADER_MAX)
        return mmk__http_error(conn, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
                               "request header too large");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return mmk__http_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        size_t len = (size_t)(mmk__http_page_end - mmk__http_page);
        struct MHD_Response *r = MHD_create_response_from_buffer(
            len, (void *)mmk__http_page, MHD_RESPMEM_PERSISTENT);
        if (r)
            MHD_add_response_header(r, "Content-Security-Policy", page_policy);
        return queue(conn, MHD_HTTP_OK, r, "text/html; charset=utf-8");
    }
    if (strcmp(url, "/events") == 0)
        return get_events(h, conn);
    if (strcmp(url, "/segments") == 0 || strcmp(url, "/segments/") == 0)
        return get_segments(h, conn);
    if (strncmp(url, "/segments/", 10) == 0)
        return get_segment(h, conn, url + 10);
    return mmk__http_error(conn, MHD_HTTP_NOT_FOUND, "not found");
}
