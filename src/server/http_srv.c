/*
 * http_srv.c - mmkitd's side of the HTTP feed: start it on the server's
 * loop, hand it every event of the server's event stream, and let it read
 * the segment table.  The only file of the feed that knows struct mmk__srv.
 */
#include "http.h"
#include "server.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

struct mmk__http_srv {
    struct mmk__watch w;
    struct mmk__timer t;
    struct mmk__srv *srv;
    struct mmk__http *h;
};

static void to_http(const mmk_seg_info *in, struct mmk__http_seg *out)
{
    out->name = in->name;
    out->size = in->size;
    out->mode = in->mode;
    out->uid = in->uid;
    out->gid = in->gid;
    out->version = in->version;
    out->holders = in->holders;
    out->subscribers = in->subscribers;
}

static int src_each(void *ctx, int (*emit)(void *, const struct mmk__http_seg *), void *arg)
{
    struct mmk__srv *srv = ctx;
    mmk_seg_info info;
    for (size_t i = 0; i < srv->segs.n; i++) {
        struct mmk__http_seg seg;
        mmk__seg_info(srv->segs.v[i], &info);
        to_http(&info, &seg);
        int r = emit(arg, &seg);
        if (r)
            return r;
    }
    return 0;
}

static int src_find(void *ctx, const char *name, struct mmk__http_seg *out)
{
    struct mmk__srv *srv = ctx;
    struct mmk__seg *s = mmk__segtab_find(&srv->segs, name);
    /* The info must outlive this call until the answer is built: one
     * static copy is enough, as the loop has one thread. */
    static mmk_seg_info info;
    if (!s)
        return -ENOENT;
    mmk__seg_info(s, &info);
    to_http(&info, out);
    return 0;
}

static void rearm(struct mmk__http_srv *hs)
{
    mmk__timer_set(&hs->srv->loop, &hs->t, mmk__http_timeout(hs->h));
}

static void on_ready(struct mmk__watch *w, uint32_t events)
{
    struct mmk__http_srv *hs = (struct mmk__http_srv *)w;
    (void)events;
    mmk__http_run(hs->h);
    rearm(hs);
}

static void on_timer(struct mmk__timer *t)
{
    struct mmk__http_srv *hs = (struct mmk__http_srv *)((char *)t - offsetof(struct mmk__http_srv, t));
    mmk__http_run(hs->h);
    rearm(hs);
}

static void sink(const mmk_seg_event *ev, void *ctx)
{
    struct mmk__http_srv *hs = ctx;
    if (ev->kind < MMK_EV_CREATE || ev->kind > MMK_EV_DETACH)
        return;
    struct mmk__http_event e = {
        .seq = ev->seq,
        .kind = (enum mmk__http_kind)(ev->kind - MMK_EV_CREATE),
        .offset = ev->offset,
        .length = ev->length,
    };
    to_http(&ev->info, &e.seg);
    /* Streams woken by the event are written by the next mmk__http_run:
     * resuming a connection does not make libmicrohttpd's descriptor ready
     * in external polling mode, so run it as soon as this batch ends. */
    if (mmk__http_publish(hs->h, &e))
        mmk__timer_set(&hs->srv->loop, &hs->t, 0);
}

int mmk__http_srv_start(struct mmk__srv *srv)
{
    if (!srv->opts.http_addr)
        return 0;
    struct mmk__http_srv *hs = calloc(1, sizeof *hs);
    if (!hs)
        return -ENOMEM;
    struct mmk__http_config cfg = {
        .addr = srv->opts.http_addr,
        .flags = (srv->opts.http_any ? MMK__HTTP_ANY : 0) | (srv->opts.http_all ? MMK__HTTP_ALL : 0),
        .heartbeat_ms = (unsigned)(srv->opts.http_heartbeat_ms > 0 ? srv->opts.http_heartbeat_ms : 0),
    };
    struct mmk__http_source src = { srv, src_each, src_find };
    hs->srv = srv;
    hs->h = mmk__http_open(&cfg, &src);
    if (!hs->h) {
        int e = -errno;
        mmk__err(srv, "http %s: %s%s", cfg.addr, mmk_strerror(e),
                 e == -EACCES ? " (not a loopback address: add --http-any)" : "");
        free(hs);
        return e;
    }
    hs->w.fd = mmk__http_fd(hs->h);
    hs->w.fn = on_ready;
    hs->t.fn = on_timer;
    int e = mmk__loop_add(&srv->loop, &hs->w, EPOLLIN);
    if (!e)
        e = mmk__events_add_sink(&srv->events, sink, hs);
    if (e) {
        mmk__loop_del(&srv->loop, &hs->w);
        mmk__http_close(hs->h);
        free(hs);
        return e;
    }
    rearm(hs);
    srv->http = hs;
    if (srv->opts.http_any)
        mmk__log(srv, "warning: the HTTP feed may listen beyond loopback: anyone who reaches %s "
                 "sees segment names and changes", mmk__http_url(hs->h));
    mmk__log(srv, "HTTP feed at %s%s", mmk__http_url(hs->h),
             srv->opts.http_all ? " (every segment)" : " (other-readable segments)");
    return 0;
}

void mmk__http_srv_stop(struct mmk__srv *srv)
{
    struct mmk__http_srv *hs = srv->http;
    if (!hs)
        return;
    mmk__events_del_sink(&srv->events, sink, hs);
    mmk__timer_cancel(&srv->loop, &hs->t);
    mmk__loop_del(&srv->loop, &hs->w);
    mmk__http_close(hs->h);
    free(hs);
    srv->http = NULL;
}
