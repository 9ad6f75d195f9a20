/*
 * http.c - mmkitd's HTTP push feed: GET /events (Server-Sent Events of the
 * server's event stream), GET /segments and /segments/NAME (JSON), GET /
 * (the live page, http_page.c), on the server's one epoll loop.
 *
 * Written by hand rather than with libmicrohttpd: every /events stream is
 * idle most of the time and must be woken by the server's own events; in
 * libmicrohttpd's external-loop mode that means suspending and resuming
 * each stream around every event, while here a stream is a descriptor
 * with a bounded output buffer that the event sink appends to.  The
 * requests are GETs without bodies, so the parser (http_parse.c) is small;
 * it is fuzzed (fuzz/http.c).
 *
 * Bounds: the head at most 8 KiB and complete within --hello-timeout;
 * at most MAX_CONNS connections (503 beyond); an /events consumer whose
 * unsent output passes MAX_OUT is dropped.  One request per connection
 * (Connection: close), except /events which streams until either side
 * closes.  HTTP has no peer credentials: only segments whose mode lets
 * "other" read are shown, unless the server runs with --http-all.
 * Contents are never served.
 */
#include "http.h"
#include "server.h"
#include "sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONNS 512
#define MAX_OUT (1u << 20)        /* unsent output of an /events stream */
#define MAX_RESPONSE (64u << 20)  /* a whole /segments answer */

extern const char mmk__http_page[];

struct http_conn {
    struct mmk__watch w;
    struct mmk__timer timer;      /* head timeout, then heartbeat */
    struct mmk__http *feed;
    char   in[MMK__HTTP_HEAD_MAX];
    size_t inlen;
    char  *out;
    size_t outlen, outoff, outcap;
    int    sse, close_after_write, want_out, dead;
    const char *doomed;
    char   filter[MMK_SEG_NAME_MAX + 1];
    int    has_filter;
    struct http_conn *prev, *next, *next_doomed, *next_dead;
};

struct mmk__http {
    struct mmk__srv *srv;
    struct mmk__watch listen_w;
    struct http_conn *conns, *doomed, *dead;
    size_t nconns;
};

static void conn_close(struct http_conn *c);

static void doom(struct http_conn *c, const char *why)
{
    if (c->doomed || c->dead)
        return;
    c->doomed = why;
    c->next_doomed = c->feed->doomed;
    c->feed->doomed = c;
}

/* ---- output ----------------------------------------------------------------- */

static void out_append(struct http_conn *c, const char *s, size_t n)
{
    if (c->doomed || c->dead)
        return;
    if (c->outlen - c->outoff + n > (c->sse ? MAX_OUT : MAX_RESPONSE)) {
        doom(c, c->sse ? "reads too slowly" : "answer too large");
        return;
    }
    if (c->outoff && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->outlen + n > c->outcap) {
        if (c->outoff) { /* slide the unsent part down first */
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        size_t cap = c->outcap ? c->outcap : 4096;
        while (cap < c->outlen + n)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            doom(c, "out of memory");
            return;
        }
        c->out = p;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
}

static void out_printf(struct http_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct http_conn *c, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_append(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void set_want_out(struct http_conn *c, int on)
{
    if (c->want_out == on || c->dead)
        return;
    c->want_out = on;
    mmk__loop_mod(&c->feed->srv->loop, &c->w, on ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void flush(struct http_conn *c)
{
    while (!c->dead && c->outoff < c->outlen) {
        struct iovec iov = { c->out + c->outoff, c->outlen - c->outoff };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n = mmk__sys_sendmsg(c->w.fd, &mh, MSG_DONTWAIT);
        if (n == -EAGAIN) {
            set_want_out(c, 1);
            return;
        }
        if (n < 0) {
            doom(c, "send failed");
            return;
        }
        c->outoff += (size_t)n;
    }
    set_want_out(c, 0);
    if (c->close_after_write)
        doom(c, "");
}

/* ---- JSON ----------------------------------------------------------------------- */

static const char *kind_name(unsigned k)
{
    static const char *const names[] = { "", "create", "write", "remove", "attach", "detach" };
    return k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

/* Segment names are [A-Za-z0-9._-]: they need no escaping in JSON. */
static void info_json(struct http_conn *c, const mmk_seg_info *in)
{
    out_printf(c,
               "{\"name\":\"%s\",\"size\":%" PRIu64 ",\"mode\":\"%04o\",\"owner\":%u,\"group\":%u,"
               "\"version\":%" PRIu64 ",\"holders\":%u,\"subscribers\":%u,\"mtime_ns\":%" PRIu64 "}",
               in->name, in->size, in->mode, in->uid, in->gid, in->version, in->holders,
               in->subscribers, in->mtime_ns);
}

static int visible(const struct mmk__srv *srv, uint32_t mode)
{
    return srv->opts.http_all || (mode & 04);
}

/* ---- responses -------------------------------------------------------------------- */

static void respond(struct http_conn *c, int status, const char *reason, const char *type,
                    const char *body, size_t len)
{
    out_printf(c,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
               status, reason, type, len);
    out_append(c, body, len);
    c->close_after_write = 1;
    flush(c);
}

static void respond_error(struct http_conn *c, int status, const char *reason)
{
    char body[128];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%d}\n", reason, status);
    respond(c, status, reason, "application/json", body, (size_t)n);
}

/* The head needs the body's length: the body goes into the output buffer
 * first, after room for the longest head, which is then written in front. */
#define JSON_HEAD_ROOM 160

static void respond_json_segments(struct http_conn *c, const char *one)
{
    struct mmk__srv *srv = c->feed->srv;
    const struct mmk__seg *s = one ? mmk__segtab_find(&srv->segs, one) : NULL;
    if (one && (!s || !visible(srv, s->mode))) {
        respond_error(c, 404, "Not Found");
        return;
    }
    char room[JSON_HEAD_ROOM];
    memset(room, ' ', sizeof room);
    size_t start = c->outlen;
    out_append(c, room, sizeof room);
    if (one) {
        mmk_seg_info in;
        mmk__seg_info(s, &in);
        info_json(c, &in);
    } else {
        int n = 0;
        out_append(c, "[", 1);
        for (size_t i = 0; i < srv->segs.n && !c->doomed; i++) {
            if (!visible(srv, srv->segs.v[i]->mode))
                continue;
            mmk_seg_info in;
            mmk__seg_info(srv->segs.v[i], &in);
            if (n++)
                out_append(c, ",", 1);
            info_json(c, &in);
        }
        out_append(c, "]", 1);
    }
    out_append(c, "\n", 1);
    if (c->doomed)
        return;
    size_t body = c->outlen - start - JSON_HEAD_ROOM;
    char head[JSON_HEAD_ROOM];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      body);
    /* Put the head right before the body and start sending from there. */
    memcpy(c->out + start + JSON_HEAD_ROOM - (size_t)hn, head, (size_t)hn);
    c->outoff = start + JSON_HEAD_ROOM - (size_t)hn;
    c->close_after_write = 1;
    flush(c);
}

static void sse_event(struct http_conn *c, const mmk_seg_event *ev)
{
    out_printf(c, "id: %" PRIu64 "\nevent: %s\ndata: {\"name\":\"%s\",\"size\":%" PRIu64
                  ",\"version\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"length\":%" PRIu64
                  ",\"holders\":%u,\"mode\":\"%04o\"}\n\n",
               ev->seq, kind_name(ev->kind), ev->info.name, ev->info.size, ev->info.version,
               ev->offset, ev->length, ev->info.holders, ev->info.mode);
}

static int wants(const struct http_conn *c, const mmk_seg_event *ev)
{
    return visible(c->feed->srv, ev->info.mode) &&
           (!c->has_filter || !strcmp(c->filter, ev->info.name));
}

static void replay_one(const mmk_seg_event *ev, void *arg)
{
    struct http_conn *c = arg;
    if (wants(c, ev))
        sse_event(c, ev);
}

static void heartbeat(struct mmk__timer *t)
{
    struct http_conn *c = (struct http_conn *)((char *)t - offsetof(struct http_conn, timer));
    out_append(c, ": heartbeat\n\n", 13);
    flush(c);
    mmk__timer_set(&c->feed->srv->loop, &c->timer, c->feed->srv->opts.http_heartbeat_ms);
}

static void start_events(struct http_conn *c, const struct mmk__http_req *r)
{
    struct mmk__srv *srv = c->feed->srv;
    c->sse = 1;
    if (r->has_segment) {
        memcpy(c->filter, r->segment, sizeof c->filter);
        c->has_filter = 1;
    }
    out_printf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
                  "Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\nretry: 2000\n: mmkitd\n\n");
    if (r->has_last_event_id && mmk__events_replay(&srv->events, r->last_event_id, replay_one, c) == -ERANGE)
        out_printf(c, "id: %" PRIu64 "\nevent: reset\ndata: {}\n\n", mmk__events_last(&srv->events));
    c->timer.fn = heartbeat;
    mmk__timer_set(&srv->loop, &c->timer, srv->opts.http_heartbeat_ms);
    flush(c);
}

static void route(struct http_conn *c, const struct mmk__http_req *r)
{
    mmk__timer_cancel(&c->feed->srv->loop, &c->timer);
    int known = !strcmp(r->path, "/") || !strcmp(r->path, "/events") || !strcmp(r->path, "/segments") ||
                !strncmp(r->path, "/segments/", 10);
    if (!known) {
        respond_error(c, 404, "Not Found");
    } else if (r->method != MMK__HTTP_GET) {
        respond_error(c, 405, "Method Not Allowed");
    } else if (!strcmp(r->path, "/")) {
        respond(c, 200, "OK", "text/html; charset=utf-8", mmk__http_page, strlen(mmk__http_page));
    } else if (!strcmp(r->path, "/events")) {
        start_events(c, r);
    } else if (!strcmp(r->path, "/segments")) {
        respond_json_segments(c, NULL);
    } else {
        const char *name = r->path + 10;
        if (!mmk__proto_name_ok(name, strlen(name)))
            respond_error(c, 404, "Not Found");
        else
            respond_json_segments(c, name);
    }
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_read(struct http_conn *c)
{
    for (;;) {
        char sink[4096];
        char *dst = c->sse || c->close_after_write ? sink : c->in + c->inlen;
        size_t room = c->sse || c->close_after_write ? sizeof sink : sizeof c->in - c->inlen;
        struct iovec iov = { dst, room };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n = room ? mmk__sys_recvmsg(c->w.fd, &mh, MSG_DONTWAIT) : 0;
        if (n == -EAGAIN)
            return;
        if (n <= 0 && room) {
            doom(c, "");
            return;
        }
        if (c->sse || c->close_after_write)
            continue; /* a stream's client has nothing to say: discard */
        c->inlen += (size_t)n;
        struct mmk__http_req r;
        int e = mmk__http_parse(c->in, c->inlen, &r);
        if (e == -EMSGSIZE || (!e && !r.head_len && c->inlen == sizeof c->in)) {
            respond_error(c, 431, "Request Header Fields Too Large");
            return;
        }
        if (e) {
            respond_error(c, 400, "Bad Request");
            return;
        }
        if (r.head_len) {
            route(c, &r);
            return;
        }
    }
}

static void conn_io(struct mmk__watch *w, uint32_t events)
{
    struct http_conn *c = (struct http_conn *)((char *)w - offsetof(struct http_conn, w));
    if (c->doomed)
        return;
    if (events & EPOLLOUT)
        flush(c);
    if (!c->doomed && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_read(c);
}

static void head_timeout(struct mmk__timer *t)
{
    struct http_conn *c = (struct http_conn *)((char *)t - offsetof(struct http_conn, timer));
    conn_close(c);
}

static void conn_close(struct http_conn *c)
{
    struct mmk__http *f = c->feed;
    if (c->dead)
        return;
    c->dead = 1;
    mmk__timer_cancel(&f->srv->loop, &c->timer);
    mmk__loop_del(&f->srv->loop, &c->w);
    mmk__sys_close(c->w.fd);
    c->w.fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        f->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    f->nconns--;
    c->next_dead = f->dead;
    f->dead = c;
}

static void on_accept(struct mmk__watch *w, uint32_t events)
{
    struct mmk__http *f = (struct mmk__http *)((char *)w - offsetof(struct mmk__http, listen_w));
    (void)events;
    for (int i = 0; i < 64; i++) {
        int fd = mmk__sys_accept(w->fd);
        if (fd < 0)
            return;
        struct http_conn *c = calloc(1, sizeof *c);
        if (!c) {
            mmk__sys_close(fd);
            return;
        }
        c->feed = f;
        c->w.fd = fd;
        c->w.fn = conn_io;
        c->timer.fn = head_timeout;
        if (mmk__loop_add(&f->srv->loop, &c->w, EPOLLIN)) {
            mmk__sys_close(fd);
            free(c);
            return;
        }
        c->next = f->conns;
        if (f->conns)
            f->conns->prev = c;
        f->conns = c;
        f->nconns++;
        if (f->nconns > MAX_CONNS) {
            respond_error(c, 503, "Service Unavailable");
            continue;
        }
        mmk__timer_set(&f->srv->loop, &c->timer, f->srv->opts.hello_ms);
    }
}

/* The event sink: every /events stream that may see the event gets it. */
static void http_sink(const mmk_seg_event *ev, void *arg)
{
    struct mmk__http *f = arg;
    for (struct http_conn *c = f->conns; c; c = c->next) {
        if (!c->sse || c->doomed || !wants(c, ev))
            continue;
        sse_event(c, ev);
        flush(c);
    }
}

void mmk__http_after_batch(struct mmk__srv *srv)
{
    struct mmk__http *f = srv->http;
    if (!f)
        return;
    while (f->doomed) {
        struct http_conn *c = f->doomed;
        f->doomed = c->next_doomed;
        if (c->doomed && c->doomed[0] && srv->opts.verbose)
            mmk__log(srv, "http client closed: %s", c->doomed);
        conn_close(c);
    }
    while (f->dead) {
        struct http_conn *c = f->dead;
        f->dead = c->next_dead;
        free(c->out);
        free(c);
    }
}

/* ---- listening ------------------------------------------------------------------ */

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len, int *loopback)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof *a;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -EINVAL;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof *a;
    *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    return 0;
}

int mmk__http_start(struct mmk__srv *srv, const char *addr, int any)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int loopback;
    if (parse_addr(addr, &ss, &len, &loopback)) {
        mmk__err(srv, "--http %s: expected ADDR:PORT (127.0.0.1:8077, [::1]:8077)", addr);
        return -EINVAL;
    }
    if (!loopback && !any) {
        mmk__err(srv, "--http %s: not a loopback address (add --http-any to serve it)", addr);
        return -EPERM;
    }
    if (!loopback)
        mmk__err(srv, "warning: the HTTP feed on %s is reachable from other machines", addr);
    struct mmk__http *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->srv = srv;
    int fd = mmk__sys_socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1, e = fd < 0 ? fd : 0;
    if (!e)
        e = mmk__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!e)
        e = mmk__sys_bind(fd, (struct sockaddr *)&ss, len);
    if (!e)
        e = mmk__sys_listen(fd, SOMAXCONN);
    f->listen_w.fd = fd;
    f->listen_w.fn = on_accept;
    if (!e)
        e = mmk__loop_add(&srv->loop, &f->listen_w, EPOLLIN);
    if (!e)
        e = mmk__events_add_sink(&srv->events, http_sink, f);
    if (e) {
        mmk__err(srv, "--http %s: %s", addr, mmk_strerror(e));
        if (fd >= 0)
            mmk__sys_close(fd);
        free(f);
        return e;
    }
    srv->http = f;
    return 0;
}

void mmk__http_stop(struct mmk__srv *srv)
{
    struct mmk__http *f = srv->http;
    if (!f)
        return;
    mmk__events_del_sink(&srv->events, http_sink, f);
    while (f->conns)
        conn_close(f->conns);
    f->doomed = NULL;
    mmk__http_after_batch(srv);
    mmk__loop_del(&srv->loop, &f->listen_w);
    mmk__sys_close(f->listen_w.fd);
    free(f);
    srv->http = NULL;
}
