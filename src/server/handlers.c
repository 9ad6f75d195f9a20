/*
 * handlers.c - one function per request.  Each checks what the peer may do
 * (its credentials against the segment's owner, group and mode), changes
 * the table, emits the event, and queues exactly one reply.
 *
 * Permissions follow files in a sticky directory such as /dev/shm: anyone
 * may create a name; reading (open read-only, subscribe) needs r, writing
 * (open read-write, publish, grow) needs w; only the owner or root removes.
 * Names and metadata (list, stat) are visible to every client, as ls shows
 * every name in a directory.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Entries per LIST reply (a reply must also fit MMK__PROTO_MAX). */
#define LIST_PAGE 128

void mmk__reply_status(struct mmk__conn *c, uint32_t id, uint16_t op, int status)
{
    uint8_t buf[64];
    int len = mmk__proto_put_reply(buf, id, op, status, 0);
    mmk__conn_send(c, buf, (size_t)len, -1);
}

static void reply_info(struct mmk__conn *c, const struct mmk__req *q, const struct mmk__seg *s,
                       uint64_t version, int fd)
{
    uint8_t buf[MMK__PROTO_REQ + MMK__PROTO_INFO_MIN + MMK_SEG_NAME_MAX];
    mmk_seg_info info;
    mmk__seg_info(s, &info);
    int len = mmk__proto_put_reply(buf, q->id, q->op, 0, version);
    len = mmk__proto_add_info(buf, (size_t)len, &info);
    mmk__conn_send(c, buf, (size_t)len, fd);
}

static struct mmk__hold *find_hold(struct mmk__conn *c, const char *name, size_t *idx)
{
    for (size_t i = 0; i < c->nholds; i++) {
        if (!c->holds[i].seg->removed && !strcmp(c->holds[i].seg->name, name)) {
            *idx = i;
            return &c->holds[i];
        }
    }
    return NULL;
}

/* The segment q names, in *out, if c may use it as want asks (access(2)
 * bits: 4 read, 2 write); -ENOENT or what mmk__seg_access says. */
static int find_allowed(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q,
                        int want, struct mmk__seg **out)
{
    struct mmk__seg *s = mmk__segtab_find(&srv->segs, q->name);
    if (!s)
        return -ENOENT;
    int e = mmk__seg_access(s->mode, s->uid, s->gid, &c->cred, want);
    if (e)
        return e;
    *out = s;
    return 0;
}

/* s was written at [off, off + len): a new version, a write event, and the
 * reply to q with the new info. */
static void written(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q,
                    struct mmk__seg *s, uint64_t off, uint64_t len)
{
    s->version++;
    s->mtime_ns = mmk__realtime_ns();
    mmk__events_emit(&srv->events, MMK_EV_WRITE, s, off, len);
    reply_info(c, q, s, s->version, -1);
}

/* ---- requests ------------------------------------------------------------------ */

static int do_create(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s;
    int e = mmk__segtab_create(&srv->segs, q->name, q->a, q->mode, c->cred.uid, c->cred.gid, &s);
    if (e)
        return e;
    srv->index_dirty = 1;
    mmk__events_emit(&srv->events, MMK_EV_CREATE, s, 0, 0);
    reply_info(c, q, s, 0, -1);
    return 0;
}

static int do_open(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s;
    int rw = (q->flags & MMK_SEG_RDWR) != 0;
    int e = find_allowed(srv, c, q, rw ? 6 : 4, &s);
    if (e)
        return e;
    size_t idx;
    struct mmk__hold *h = find_hold(c, q->name, &idx);
    if (!h && c->nholds >= MMK__MAX_HOLDS)
        return -EMFILE;
    if (h && h->count == UINT32_MAX)
        return -EMFILE;
    if (!h && c->nholds == c->capholds) {
        size_t cap = c->capholds ? c->capholds * 2 : 4;
        struct mmk__hold *v = realloc(c->holds, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        c->holds = v;
        c->capholds = cap;
    }
    int fd = mmk__seg_reopen(s, rw);
    if (fd < 0)
        return fd;
    if (!h) {
        h = &c->holds[c->nholds++];
        h->seg = s;
        h->count = 0;
        mmk__seg_ref(s);
    }
    h->count++;
    s->holders++;
    mmk__events_emit(&srv->events, MMK_EV_ATTACH, s, 0, 0);
    reply_info(c, q, s, 0, fd);
    return 0;
}

/* Drop one open of hold i (and the hold itself when it reaches zero). */
static void release_one(struct mmk__srv *srv, struct mmk__conn *c, size_t i)
{
    struct mmk__seg *s = c->holds[i].seg;
    s->holders--;
    if (!s->removed)
        mmk__events_emit(&srv->events, MMK_EV_DETACH, s, 0, 0);
    if (--c->holds[i].count == 0) {
        c->holds[i] = c->holds[--c->nholds];
        mmk__seg_unref(s);
    }
}

static int do_release(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    size_t idx;
    if (!find_hold(c, q->name, &idx))
        return -ENOENT;
    release_one(srv, c, idx);
    mmk__reply_status(c, q->id, q->op, 0);
    return 0;
}

static int do_stat(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s = mmk__segtab_find(&srv->segs, q->name);
    if (!s)
        return -ENOENT;
    reply_info(c, q, s, s->version, -1);
    return 0;
}

static int do_list(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    uint8_t *buf = srv->out;
    int len = mmk__proto_put_reply(buf, q->id, q->op, 0, 0);
    size_t i = q->namelen ? mmk__segtab_after(&srv->segs, q->name) : 0;
    for (int k = 0; i < srv->segs.n && k < LIST_PAGE; i++, k++) {
        mmk_seg_info info;
        mmk__seg_info(srv->segs.v[i], &info);
        int n = mmk__proto_add_info(buf, (size_t)len, &info);
        if (n < 0)
            break;
        len = n;
    }
    mmk__proto_set_more(buf, i < srv->segs.n);
    mmk__conn_send(c, buf, (size_t)len, -1);
    return 0;
}

static int do_remove(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s = mmk__segtab_find(&srv->segs, q->name);
    if (!s)
        return -ENOENT;
    if (c->cred.uid != 0 && c->cred.uid != s->uid)
        return -EPERM;
    mmk__events_emit(&srv->events, MMK_EV_REMOVE, s, 0, 0);
    mmk__conn_drop_subs(srv, s);
    mmk__persist_forget(srv, s->name);
    mmk__segtab_remove(&srv->segs, s);
    srv->index_dirty = 1;
    mmk__reply_status(c, q->id, q->op, 0);
    return 0;
}

static int do_grow(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s;
    int e = find_allowed(srv, c, q, 2, &s);
    if (e)
        return e;
    mmk_seg_info before;
    mmk__seg_info(s, &before);
    e = mmk__seg_grow(s, q->a, srv->segs.max_size);
    if (e)
        return e;
    srv->index_dirty = 1;
    written(srv, c, q, s, before.size, q->a - before.size);
    return 0;
}

static int do_subscribe(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    if (q->namelen == 0) {
        if (c->sub_all)
            return -EALREADY;
        if (srv->nsuball == srv->capsuball) {
            size_t cap = srv->capsuball ? srv->capsuball * 2 : 16;
            struct mmk__conn **v = realloc(srv->suball, cap * sizeof *v);
            if (!v)
                return -ENOMEM;
            srv->suball = v;
            srv->capsuball = cap;
        }
        srv->suball[srv->nsuball++] = c;
        c->sub_all = 1;
        mmk__reply_status(c, q->id, q->op, 0);
        return 0;
    }
    struct mmk__seg *s;
    int e = find_allowed(srv, c, q, 4, &s);
    if (e)
        return e;
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i] == s)
            return -EALREADY;
    if (c->nsubs >= MMK__MAX_SUBS)
        return -EMFILE;
    if (c->nsubs == c->capsubs) {
        size_t cap = c->capsubs ? c->capsubs * 2 : 4;
        struct mmk__seg **v = realloc(c->subs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        c->subs = v;
        c->capsubs = cap;
    }
    int ring = (q->flags & MMK__SUB_RING) && !srv->opts.no_rings;
    int ring_fd = -1, bell_fd = -1;
    e = mmk__seg_sub_add(s, c, &ring);
    if (!e && ring && mmk__ring_handout(s->ring, &ring_fd, &bell_fd) != 0) {
        /* The ring cannot be handed out: event messages instead. */
        mmk__seg_sub_del(s, c);
        ring = 0;
        e = mmk__seg_sub_add(s, c, &ring);
    }
    if (e)
        return e;
    c->subs[c->nsubs++] = s;
    uint8_t buf[64];
    int len = mmk__proto_put_reply(buf, q->id, q->op, 0, ring ? mmk__ring_head(s->ring) : 0);
    mmk__conn_send2(c, buf, (size_t)len, ring_fd, bell_fd);
    return 0;
}

static void drop_sub_all(struct mmk__srv *srv, struct mmk__conn *c)
{
    for (size_t i = 0; i < srv->nsuball; i++) {
        if (srv->suball[i] == c) {
            srv->suball[i] = srv->suball[--srv->nsuball];
            break;
        }
    }
    c->sub_all = 0;
}

static int do_unsubscribe(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    if (q->namelen == 0) {
        if (!c->sub_all)
            return -ENOENT;
        drop_sub_all(srv, c);
        mmk__reply_status(c, q->id, q->op, 0);
        return 0;
    }
    for (size_t i = 0; i < c->nsubs; i++) {
        struct mmk__seg *s = c->subs[i];
        if (!strcmp(s->name, q->name)) {
            mmk__seg_sub_del(s, c);
            c->subs[i] = c->subs[--c->nsubs];
            mmk__reply_status(c, q->id, q->op, 0);
            return 0;
        }
    }
    return -ENOENT;
}

static int do_publish(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    struct mmk__seg *s;
    int e = find_allowed(srv, c, q, 2, &s);
    if (e)
        return e;
    mmk_seg_info info;
    mmk__seg_info(s, &info);
    uint64_t off = q->a, len = q->b;
    if (off > info.size || (len && len > info.size - off))
        return -ERANGE;
    if (len == 0)
        len = info.size - off;
    written(srv, c, q, s, off, len);
    return 0;
}

void mmk__handle(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q)
{
    int e;
    switch (q->op) {
    case MMK__T_HELLO:
    case MMK_OP_PING:
        mmk__reply_status(c, q->id, q->op, 0);
        return;
    case MMK_OP_CREATE:      e = do_create(srv, c, q); break;
    case MMK_OP_OPEN:        e = do_open(srv, c, q); break;
    case MMK_OP_RELEASE:     e = do_release(srv, c, q); break;
    case MMK_OP_STAT:        e = do_stat(srv, c, q); break;
    case MMK_OP_LIST:        e = do_list(srv, c, q); break;
    case MMK_OP_REMOVE:      e = do_remove(srv, c, q); break;
    case MMK_OP_GROW:        e = do_grow(srv, c, q); break;
    case MMK_OP_SUBSCRIBE:   e = do_subscribe(srv, c, q); break;
    case MMK_OP_UNSUBSCRIBE: e = do_unsubscribe(srv, c, q); break;
    case MMK_OP_PUBLISH:     e = do_publish(srv, c, q); break;
    default:                 e = -EBADMSG; break;
    }
    if (e)
        mmk__reply_status(c, q->id, q->op, e);
}

void mmk__release_all(struct mmk__srv *srv, struct mmk__conn *c)
{
    while (c->nholds)
        release_one(srv, c, c->nholds - 1);
    for (size_t i = 0; i < c->nsubs; i++)
        mmk__seg_sub_del(c->subs[i], c);
    c->nsubs = 0;
    if (c->sub_all)
        drop_sub_all(srv, c);
}
