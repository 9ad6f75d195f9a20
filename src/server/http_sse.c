/*
 * http_sse.c - GET /events: one Server-Sent Events stream per client.
 *
 * A stream is a position in the shared feed (http_feed.c) plus a few bytes of
 * its own (the retry line, a reset event, a heartbeat).  libmicrohttpd pulls
 * bytes from stream_read when the socket can take them; with nothing to
 * send the stream suspends its connection, and a publish or a heartbeat
 * resumes it.  So an idle stream costs no work and no wake-ups, and a stream
 * that stops reading only holds its position: when the feed drops the event
 * it stands on, the stream is cut (memory stays bounded) and the client,
 * reconnecting with Last-Event-ID, is told to reset.
 */
#include "http_int.h"
#include "http_json.h"
#include "sys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct mmk__sse {
    struct mmk__sse *prev, *next;
    struct mmk__http *h;
    struct MHD_Connection *conn;
    char *filter;               /* segment name, or NULL for all */
    uint64_t pos;               /* next feed position to send */
    size_t off;                 /* bytes of the event at pos already sent */
    uint64_t beat;              /* heartbeats sent */
    char pre[192];              /* own bytes to send first */
    size_t pre_len, pre_off;
    bool suspended, dropped;
};

static const char heartbeat[] = ": heartbeat\n\n";

static void stream_unlink(struct mmk__sse *s)
{
    struct mmk__http *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->nstreams--;
}

/* libmicrohttpd is done with the response: the connection is gone. */
static void stream_free(void *cls)
{
    struct mmk__sse *s = cls;
    stream_unlink(s);
    free(s->filter);
    free(s);
}

static void stream_resume(struct mmk__sse *s)
{
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

/* Cut a stream that fell behind the feed.  A suspended one is resumed and
 * ends from stream_read; a busy one (its socket full) has its socket shut
 * down so libmicrohttpd sees the error at once instead of at its timeout. */
static void stream_drop(struct mmk__sse *s)
{
    if (s->dropped)
        return;
    s->dropped = true;
    s->h->dropped++;
    if (s->suspended) {
        stream_resume(s);
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        mmk__sys_shutdown(ci->connect_fd, SHUT_RDWR);
}

static bool stream_wants(const struct mmk__sse *s, const struct mmk__feed_event *e)
{
    return !s->filter || strcmp(s->filter, e->name) == 0;
}

static size_t copy_some(char *buf, size_t room, const char *src, size_t len)
{
    size_t n = len < room ? len : room;
    memcpy(buf, src, n);
    return n;
}

static ssize_t stream_read(void *cls, uint64_t at, char *buf, size_t max)
{
    struct mmk__sse *s = cls;
    struct mmk__http *h = s->h;
    size_t n = 0;
    (void)at;
    if (s->dropped)
        return MHD_CONTENT_READER_END_WITH_ERROR;

    if (s->pre_off < s->pre_len) {
        size_t c = copy_some(buf, max, s->pre + s->pre_off, s->pre_len - s->pre_off);
        s->pre_off += c;
        n += c;
        if (s->pre_off < s->pre_len)
            return (ssize_t)n;
    }
    /* A heartbeat goes between events, never inside one. */
    if (s->beat != h->beat && s->off == 0 && max - n >= sizeof heartbeat - 1) {
        memcpy(buf + n, heartbeat, sizeof heartbeat - 1);
        n += sizeof heartbeat - 1;
        s->beat = h->beat;
    }
    while (n < max && s->pos < mmk__feed_end(h->feed)) {
        const struct mmk__feed_event *e = mmk__feed_at(h->feed, s->pos);
        if (!e) { /* fell behind: what it would send next is gone */
            s->dropped = true;
            h->dropped++;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (!stream_wants(s, e)) {
            s->pos++;
            continue;
        }
        size_t c = copy_some(buf + n, max - n, e->text + s->off, e->len - s->off);
        n += c;
        s->off += c;
        if (s->off == e->len) {
            s->pos++;
            s->off = 0;
        }
    }
    if (n == 0) {
        /* Nothing to send: sleep until a publish or a heartbeat. */
        s->suspended = true;
        MHD_suspend_connection(s->conn);
    }
    return (ssize_t)n;
}

static int pre_add(struct mmk__sse *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pre_add(struct mmk__sse *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof s->pre - s->pre_len;
    int r = vsnprintf(s->pre + s->pre_len, room, fmt, ap);
    va_end(ap);
    if (r < 0 || (size_t)r >= room)
        return -1;
    s->pre_len += (size_t)r;
    return 0;
}

enum MHD_Result mmk__sse_start(struct mmk__http *h, struct MHD_Connection *conn,
                               const char *filter, bool have_last, uint64_t last_id)
{
    struct mmk__sse *s = calloc(1, sizeof *s);
    if (!s)
        return mmk__http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    if (filter && !(s->filter = strdup(filter))) {
        free(s);
        return mmk__http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    s->h = h;
    s->conn = conn;
    s->beat = h->beat;
    /* Reconnect quickly after a lost connection (the browser's default is
     * a few seconds). */
    pre_add(s, "retry: 1000\n\n");
    if (have_last) {
        if (mmk__feed_resume(h->feed, last_id, &s->pos)) {
            uint64_t seq = mmk__feed_last_seq(h->feed);
            pre_add(s, "id: %" PRIu64 "\nevent: reset\ndata: {\"seq\":%" PRIu64
                    ",\"after\":%" PRIu64 "}\n\n", seq, seq, last_id);
        }
    } else {
        s->pos = mmk__feed_end(h->feed);
    }

    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, MMK__HTTP_BLOCK, stream_read, s, stream_free);
    if (!r) {
        free(s->filter);
        free(s);
        return mmk__http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
    }
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* the connection holds it; stream_free runs when it goes */
    return ok;
}

void mmk__sse_notify(struct mmk__http *h)
{
    uint64_t begin = mmk__feed_begin(h->feed), end = mmk__feed_end(h->feed);
    const struct mmk__feed_event *last = mmk__feed_at(h->feed, end - 1);
    for (struct mmk__sse *s = h->streams; s; s = s->next) {
        if (s->dropped)
            continue;
        if (s->suspended) {
            /* A sleeping stream has sent everything before this event. */
            if (last && stream_wants(s, last))
                stream_resume(s);
            else
                s->pos = end;
        } else if (s->pos < begin) {
            stream_drop(s);
        }
    }
}

void mmk__sse_heartbeat(struct mmk__http *h)
{
    h->beat++;
    for (struct mmk__sse *s = h->streams; s; s = s->next)
        stream_resume(s);
}

void mmk__sse_resume_all(struct mmk__http *h)
{
    for (struct mmk__sse *s = h->streams; s; s = s->next) {
        s->dropped = true;
        stream_resume(s);
    }
}

void mmk__sse_drop_all(struct mmk__http *h)
{
    for (struct mmk__sse *s = h->streams; s; s = s->next) {
        bool was_dropped = s->dropped;
        stream_drop(s);
        if (!was_dropped)
            h->dropped--; /* not for falling behind */
    }
}
