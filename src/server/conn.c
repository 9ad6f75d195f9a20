/*
 * conn.c - client connections.
 *
 * A connection is accepted non-blocking, with the peer's credentials read
 * once (SO_PEERCRED, SO_PEERGROUPS: what the peer was when it connected,
 * which is what a file's permissions would see).  It must say hello within
 * hello_ms or it is closed: a client that connects and sends nothing holds
 * a descriptor for a bounded time only.  On SOCK_SEQPACKET a message
 * arrives whole or not at all, so there is no half message to wait for.
 *
 * Sending never blocks: a reply or event goes out at once if the socket
 * has room, else into the connection's queue (flushed on EPOLLOUT); a
 * connection whose queue passes MMK__MAX_OUT messages reads too slowly and
 * is closed, so memory stays bounded whatever a client does.
 *
 * Closing a connection (hang-up, crash, error, timeout) releases its opens
 * (detach events) and subscriptions at once; its memory is freed after the
 * current batch of epoll events, which may still name its watch.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Read at most this many messages from one connection per wake-up, so one
 * busy client cannot starve the others. */
#define READ_BURST 32
/* Malformed messages tolerated on one connection before it is closed. */
#define MAX_BAD 16

static void conn_io(struct mmk__watch *w, uint32_t events);

static void hello_expired(struct mmk__timer *t)
{
    struct mmk__conn *c = (struct mmk__conn *)((char *)t - offsetof(struct mmk__conn, hello_timer));
    mmk__conn_close(c, "no hello in time");
}

static void read_cred(struct mmk__conn *c)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    c->cred.uid = (uid_t)-1; /* nobody we know: every check falls to "other" */
    c->cred.gid = (gid_t)-1;
    if (mmk__sys_getsockopt(c->w.fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
        c->cred.uid = uc.uid;
        c->cred.gid = uc.gid;
        c->cred.pid = uc.pid;
    }
#ifdef SO_PEERGROUPS
    len = sizeof c->cred.groups;
    if (mmk__sys_getsockopt(c->w.fd, SOL_SOCKET, SO_PEERGROUPS, c->cred.groups, &len) == 0)
        c->cred.ngroups = (int)(len / sizeof(gid_t));
#endif
}

/* 1 if the peer on fd is a non-root uid that has max_per_uid connections
 * already: one user cannot take every slot. */
static int over_uid_limit(const struct mmk__srv *srv, int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (mmk__sys_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
        return 1;
    if (uc.uid == 0)
        return 0;
    int n = 0;
    for (const struct mmk__conn *c = srv->conns; c; c = c->next)
        n += c->cred.uid == uc.uid;
    return n >= srv->opts.max_per_uid;
}

void mmk__conn_accept(struct mmk__srv *srv)
{
    for (int i = 0; i < 64; i++) {
        int fd = mmk__sys_accept(srv->listen_w.fd);
        if (fd < 0) {
            if (fd != -EAGAIN && fd != -ECONNABORTED)
                mmk__err(srv, "accept: %s", mmk_strerror(fd));
            return;
        }
        if (srv->nconns >= (size_t)srv->opts.max_clients || over_uid_limit(srv, fd)) {
            /* Say why before closing: a reply with id 0 is about the connection. */
            int len = mmk__proto_put_reply(srv->out, 0, MMK__T_HELLO, -EMFILE, 0);
            struct iovec iov = { srv->out, (size_t)len };
            struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
            mmk__sys_sendmsg(fd, &mh, MSG_DONTWAIT);
            mmk__sys_close(fd);
            continue;
        }
        struct mmk__conn *c = calloc(1, sizeof *c);
        if (!c) {
            mmk__sys_close(fd);
            return;
        }
        c->srv = srv;
        c->w.fd = fd;
        c->w.fn = conn_io;
        c->hello_timer.fn = hello_expired;
        read_cred(c);
        if (mmk__loop_add(&srv->loop, &c->w, EPOLLIN) ||
            mmk__timer_set(&srv->loop, &c->hello_timer, srv->opts.hello_ms)) {
            mmk__loop_del(&srv->loop, &c->w);
            mmk__sys_close(fd);
            free(c);
            return;
        }
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
    }
}

/* ---- sending -------------------------------------------------------------- */

/* Send one message now, with fd[0], fd[1] (each or -1).  0, -EAGAIN (socket
 * full), or another -errno. */
static int send_now(struct mmk__conn *c, const void *buf, size_t len, const int fd[2])
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(2 * sizeof(int))];
    } ctl;
    struct iovec iov = { (void *)buf, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    int pass[2], n = 0;
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0)
            pass[n++] = fd[i];
    if (n) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.space;
        mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(cm), pass, (size_t)n * sizeof(int));
    }
    ssize_t r = mmk__sys_sendmsg(c->w.fd, &mh, MSG_DONTWAIT);
    return r < 0 ? (int)r : 0;
}

static void close_fds(const int fd[2])
{
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0)
            mmk__sys_close(fd[i]);
}

static void set_want_out(struct mmk__conn *c, int on)
{
    if (c->want_out == on)
        return;
    c->want_out = on;
    mmk__loop_mod(&c->srv->loop, &c->w, on ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void flush_out(struct mmk__conn *c)
{
    while (c->out_head) {
        struct mmk__outmsg *m = c->out_head;
        int e = send_now(c, m->data, m->len, m->fd);
        if (e == -EAGAIN)
            return;
        c->out_head = m->next;
        if (!c->out_head)
            c->out_tail = NULL;
        c->nout--;
        close_fds(m->fd);
        free(m);
        if (e) {
            mmk__conn_close(c, "send failed");
            return;
        }
    }
    set_want_out(c, 0);
}

/*
 * Mark c to be closed after the current batch.  Sending happens while an
 * event is being fanned out over subscriber arrays; closing at once would
 * release c's opens and emit detach events in the middle of that walk.
 */
static void doom(struct mmk__conn *c, const char *why)
{
    if (c->doomed || c->dead)
        return;
    c->doomed = why;
    c->next_doomed = c->srv->doomed;
    c->srv->doomed = c;
}

void mmk__conn_send2(struct mmk__conn *c, const void *buf, size_t len, int fd0, int fd1)
{
    const int fd[2] = { fd0, fd1 };
    if (c->dead || c->doomed) {
        close_fds(fd);
        return;
    }
    if (!c->out_head) {
        int e = send_now(c, buf, len, fd);
        if (e != -EAGAIN) {
            close_fds(fd); /* the peer has its own copies now */
            if (e)
                doom(c, "send failed");
            return;
        }
    }
    if (c->nout >= MMK__MAX_OUT) {
        close_fds(fd);
        doom(c, "reads too slowly (send queue full)");
        return;
    }
    struct mmk__outmsg *m = malloc(sizeof *m + len);
    if (!m) {
        close_fds(fd);
        doom(c, "out of memory");
        return;
    }
    m->next = NULL;
    m->fd[0] = fd0;
    m->fd[1] = fd1;
    m->len = len;
    memcpy(m->data, buf, len);
    if (c->out_tail)
        c->out_tail->next = m;
    else
        c->out_head = m;
    c->out_tail = m;
    c->nout++;
    set_want_out(c, 1);
}

void mmk__conn_send(struct mmk__conn *c, const void *buf, size_t len, int fd)
{
    mmk__conn_send2(c, buf, len, fd, -1);
}

/* ---- receiving -------------------------------------------------------------- */

/* Close every descriptor a client sent us: the server takes none. */
static int drop_fds(struct msghdr *mh)
{
    int got = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            mmk__sys_close(fd);
        }
        got = 1;
    }
    return got;
}

/* A message that cannot be served: reply with its id if it has one. */
static void bad_message(struct mmk__conn *c, const void *buf, size_t len, int err)
{
    uint16_t type;
    uint32_t id;
    int hdr = mmk__proto_peek(buf, len, &type, &id);
    if (hdr == 0 && id != 0 && type >= MMK__T_REQ_FIRST && type <= MMK__T_REQ_LAST)
        mmk__reply_status(c, id, type, err);
    else
        mmk__reply_status(c, 0, 0, err);
    if (++c->bad > MAX_BAD || hdr != 0)
        mmk__conn_close(c, "malformed messages");
}

static void conn_read(struct mmk__conn *c)
{
    struct mmk__srv *srv = c->srv;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(16 * sizeof(int))];
    } ctl;
    for (int i = 0; i < READ_BURST && !c->dead && !c->doomed; i++) {
        struct iovec iov = { srv->buf, sizeof srv->buf };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.space, .msg_controllen = sizeof ctl.space };
        ssize_t n = mmk__sys_recvmsg(c->w.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            mmk__conn_close(c, n == 0 ? NULL : "receive failed");
            return;
        }
        int had_fds = drop_fds(&mh);
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
            bad_message(c, srv->buf, (size_t)n, -EMSGSIZE);
            continue;
        }
        struct mmk__req q;
        int e = mmk__proto_parse_req(srv->buf, (size_t)n, &q);
        if (!e && had_fds)
            e = -EBADMSG;
        if (!e && !c->hello && q.op != MMK__T_HELLO)
            e = -EPROTO; /* hello first */
        if (e) {
            bad_message(c, srv->buf, (size_t)n, e);
            continue;
        }
        if (q.op == MMK__T_HELLO && !c->hello) {
            c->hello = 1;
            mmk__timer_cancel(&srv->loop, &c->hello_timer);
        }
        mmk__handle(srv, c, &q);
    }
}

static void conn_io(struct mmk__watch *w, uint32_t events)
{
    struct mmk__conn *c = (struct mmk__conn *)((char *)w - offsetof(struct mmk__conn, w));
    if (events & EPOLLOUT)
        flush_out(c);
    if (!c->dead && !c->doomed && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        conn_read(c);
}

/* ---- closing ------------------------------------------------------------------ */

void mmk__conn_close(struct mmk__conn *c, const char *why)
{
    if (c->dead)
        return;
    struct mmk__srv *srv = c->srv;
    c->dead = 1;
    if (why && srv->opts.verbose)
        mmk__log(srv, "client pid %d closed: %s", (int)c->cred.pid, why);
    mmk__loop_del(&srv->loop, &c->w);
    mmk__sys_close(c->w.fd);
    c->w.fd = -1;
    mmk__timer_cancel(&srv->loop, &c->hello_timer);
    while (c->out_head) {
        struct mmk__outmsg *m = c->out_head;
        c->out_head = m->next;
        close_fds(m->fd);
        free(m);
    }
    c->out_tail = NULL;
    c->nout = 0;
    mmk__release_all(srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    c->next_dead = srv->dead;
    srv->dead = c;
}

void mmk__conn_after_batch(void *arg)
{
    struct mmk__srv *srv = arg;
    while (srv->doomed) {
        struct mmk__conn *c = srv->doomed;
        srv->doomed = c->next_doomed;
        const char *why = c->doomed;
        c->doomed = NULL;
        mmk__conn_close(c, why);
    }
    if (srv->index_dirty && srv->opts.state_dir) {
        srv->index_dirty = 0;
        int e = mmk__persist_index(srv);
        if (e)
            mmk__err(srv, "cannot write the state index: %s", mmk_strerror(e));
    }
    while (srv->dead) {
        struct mmk__conn *c = srv->dead;
        srv->dead = c->next_dead;
        free(c->holds);
        free(c->subs);
        free(c);
    }
}

/* ---- events to subscribers ------------------------------------------------------ */

static void push_event(struct mmk__conn *c, const mmk_seg_event *ev, const uint8_t *msg, size_t len)
{
    if (c->dead || c->doomed || c->last_event == ev->seq)
        return;
    c->last_event = ev->seq;
    mmk__conn_send(c, msg, len, -1);
}

void mmk__conn_event_sink(const mmk_seg_event *ev, void *arg)
{
    struct mmk__srv *srv = arg;
    uint8_t msg[MMK__PROTO_REQ + MMK__PROTO_INFO_MIN + MMK_SEG_NAME_MAX + 64];
    int len = mmk__proto_put_event(msg, ev);
    if (len < 0)
        return;
    struct mmk__seg *s = mmk__segtab_find(&srv->segs, ev->info.name);
    if (s) {
        if (s->ring)
            mmk__ring_put(s->ring, ev); /* every ring reader at once */
        for (size_t i = 0; i < s->nsubs; i++) {
            struct mmk__conn *c = s->subs[i];
            if (mmk__seg_sub_ring(s, i))
                c->last_event = ev->seq; /* had it from the ring: no copy below */
            else
                push_event(c, ev, msg, (size_t)len);
        }
    }
    for (size_t i = 0; i < srv->nsuball; i++) {
        struct mmk__conn *c = srv->suball[i];
        if (mmk__seg_access(ev->info.mode, ev->info.uid, ev->info.gid, &c->cred, 4) == 0)
            push_event(c, ev, msg, (size_t)len);
    }
}

void mmk__conn_drop_subs(struct mmk__srv *srv, struct mmk__seg *s)
{
    (void)srv;
    for (size_t i = 0; i < s->nsubs; i++) {
        struct mmk__conn *c = s->subs[i];
        for (size_t j = 0; j < c->nsubs; j++) {
            if (c->subs[j] == s) {
                c->subs[j] = c->subs[--c->nsubs];
                break;
            }
        }
    }
    mmk__seg_sub_clear(s);
}
