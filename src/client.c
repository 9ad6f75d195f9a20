/*
 * client.c - the client side of mmkitd: connect, synchronous calls with a
 * timeout, and asynchronous submit/recv with replies matched by request id.
 *
 * Replies (carrying the id of their request) and events (id 0) arrive on
 * one socket; events of a segment subscribed to with its event ring arrive
 * in the ring instead (client_ring.c).  A synchronous call reads until its
 * own reply comes; whatever else it reads on the way is kept, in order, in
 * a queue that mmk_client_recv and mmk_seg_next_event drain first.
 * Nothing is dropped, so asynchronous and synchronous use mix.
 */
#include "client.h"
#include "proto.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 5000

/* ---- paths and time ----------------------------------------------------- */

int mmk_server_default_path(char *buf, size_t cap)
{
    const char *env = getenv("MMKIT_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && *env)
        n = snprintf(buf, cap, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(buf, cap, "%s/mmkit.sock", xdg);
    else
        n = snprintf(buf, cap, "/run/mmkit.sock");
    if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return -ENAMETOOLONG;
    return n;
}

int64_t mmk__client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mmk__client_deadline(const mmk_client *c, int timeout_ms)
{
    return mmk__client_now_ms() + (timeout_ms < 0 ? c->timeout_ms : timeout_ms);
}

/* Wait until fd is ready for events or the deadline passes. */
int mmk__client_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mmk__client_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = { .fd = fd, .events = events };
        int n = mmk__sys_poll(&p, 1, (int)(left > 1 << 30 ? 1 << 30 : left));
        if (n == -EINTR)
            continue;
        if (n < 0)
            return n;
        if (n > 0)
            return 0;
        if (left == 0)
            return -ETIMEDOUT;
    }
}

/* ---- sending -------------------------------------------------------------- */

static int send_req(mmk_client *c, const struct mmk__req *q)
{
    uint8_t buf[MMK__PROTO_REQ + MMK_SEG_NAME_MAX];
    int len = mmk__proto_put_req(buf, q);
    if (len < 0)
        return len;
    struct iovec iov = { buf, (size_t)len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    int64_t deadline = mmk__client_deadline(c, -1);
    for (;;) {
        ssize_t n = mmk__sys_sendmsg(c->fd, &mh, MSG_DONTWAIT);
        if (n >= 0)
            return 0;
        if (n != -EAGAIN)
            return (int)n;
        int e = mmk__client_wait(c->fd, POLLOUT, deadline);
        if (e)
            return e;
    }
}

static int build_req(struct mmk__req *q, unsigned op, const char *name, uint64_t a, uint64_t b,
                     unsigned mode, unsigned flags)
{
    memset(q, 0, sizeof *q);
    q->op = (uint16_t)op;
    q->a = a;
    q->b = b;
    q->mode = mode;
    q->flags = flags;
    if (name) {
        q->namelen = strnlen(name, MMK_SEG_NAME_MAX + 1);
        if (q->namelen > MMK_SEG_NAME_MAX)
            return -EINVAL;
        memcpy(q->name, name, q->namelen);
    }
    return 0;
}

static uint32_t take_id(mmk_client *c)
{
    /* Ids stay positive as an int: mmk_client_submit returns them. */
    if (++c->next_id > 0x7fffffffu)
        c->next_id = 1;
    return c->next_id;
}

/* ---- receiving ------------------------------------------------------------ */

/*
 * Read one datagram into c->buf before the deadline.  fd[0], fd[1] get the
 * descriptors that came with it (or -1); extra ones are closed.  Returns
 * the length.
 */
int mmk__client_read(mmk_client *c, int64_t deadline, int fd[2])
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    fd[0] = fd[1] = -1;
    int reset = 0;
    for (;;) {
        struct iovec iov = { c->buf, MMK__PROTO_MAX };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.space, .msg_controllen = sizeof ctl.space };
        ssize_t n = mmk__sys_recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        /* A server that hung up with our request unread makes the kernel
         * report ECONNRESET once, before the messages it sent: read those
         * first (the last one may say why, such as a limit). */
        if (n == -ECONNRESET && !reset) {
            reset = 1;
            continue;
        }
        if (reset && (n == -EAGAIN || n == 0))
            return -ECONNRESET;
        if (n == -EAGAIN) {
            if (deadline <= mmk__client_now_ms())
                return -ETIMEDOUT; /* nothing there and no time to wait */
            int e = mmk__client_wait(c->fd, POLLIN, deadline);
            if (e)
                return e;
            continue;
        }
        if (n < 0)
            return (int)n;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int got;
                memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
                if (fd[0] < 0)
                    fd[0] = got;
                else if (fd[1] < 0)
                    fd[1] = got;
                else
                    mmk__sys_close(got);
            }
        }
        if (n == 0)
            return -ECONNRESET; /* the server closed the connection */
        if (mh.msg_flags & MSG_TRUNC) {
            mmk__client_close_fds(fd);
            return -EPROTO;
        }
        return (int)n;
    }
}

void mmk__client_close_fds(int fd[2])
{
    for (int i = 0; i < 2; i++) {
        if (fd[i] >= 0)
            mmk__sys_close(fd[i]);
        fd[i] = -1;
    }
}

/*
 * Turn the datagram in c->buf into a message.  Takes ownership of fd[]: an
 * OPEN reply's descriptor goes to m->fd, a ring SUBSCRIBE reply's two to
 * c->ring_fd (for mmk_seg_subscribe to take); others are closed.
 */
int mmk__client_message(mmk_client *c, size_t len, int fd[2], mmk_message *m,
                        struct mmk__reply *raw)
{
    uint16_t type;
    uint32_t id;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int e = mmk__proto_peek(c->buf, len, &type, &id);
    if (!e && type == MMK__T_EVENT) {
        e = mmk__proto_parse_event(c->buf, len, &m->event);
        m->kind = MMK_MSG_EVENT;
    } else if (!e) {
        struct mmk__reply r;
        e = mmk__proto_parse_reply(c->buf, len, &r);
        if (!e) {
            m->kind = MMK_MSG_REPLY;
            m->id = r.id;
            m->op = r.op;
            m->status = r.status;
            m->version = r.version;
            size_t pos = 0;
            if (r.count > 0)
                mmk__proto_next_info(&r, &pos, &m->info);
            if (raw)
                *raw = r;
        }
    }
    if (!e && m->kind == MMK_MSG_REPLY && m->op == MMK_OP_OPEN && m->status == 0) {
        if (fd[0] < 0)
            e = -EPROTO;
        m->fd = fd[0];
        fd[0] = -1;
    }
    if (!e && m->kind == MMK_MSG_REPLY && m->op == MMK_OP_SUBSCRIBE && m->status == 0 &&
        fd[0] >= 0 && fd[1] >= 0 && c->ring_id && m->id == c->ring_id) {
        mmk__client_close_fds(c->ring_fd);
        c->ring_fd[0] = fd[0];
        c->ring_fd[1] = fd[1];
        c->ring_pos = m->version;
        m->version = 0;
        fd[0] = fd[1] = -1;
    }
    mmk__client_close_fds(fd);
    if (e && m->fd >= 0) {
        mmk__sys_close(m->fd);
        m->fd = -1;
    }
    return e ? -EPROTO : 0;
}

int mmk__client_enqueue(mmk_client *c, const mmk_message *m)
{
    struct mmk__queued *q = malloc(sizeof *q);
    if (!q)
        return -ENOMEM;
    q->m = *m;
    q->next = NULL;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->pending++;
    return 0;
}

/* Take the first queued message of kind (0: any) into *m.  1 if found. */
int mmk__client_dequeue(mmk_client *c, unsigned kind, mmk_message *m)
{
    struct mmk__queued **pp = &c->head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        struct mmk__queued *q = *pp;
        if (kind && q->m.kind != kind)
            continue;
        *m = q->m;
        *pp = q->next;
        if (c->tail == q)
            c->tail = prev;
        c->pending--;
        free(q);
        return 1;
    }
    return 0;
}

/*
 * Read until the reply to id arrives (queueing everything else).  On
 * success *m is the reply and *raw its parsed form, whose records live in
 * c->buf until the next read.
 */
static int wait_reply(mmk_client *c, uint32_t id, mmk_message *m, struct mmk__reply *raw)
{
    int64_t deadline = mmk__client_deadline(c, -1);
    for (;;) {
        int fd[2];
        int n = mmk__client_read(c, deadline, fd);
        if (n < 0)
            return n;
        int e = mmk__client_message(c, (size_t)n, fd, m, raw);
        if (e)
            return e;
        if (m->kind == MMK_MSG_REPLY && m->id == id)
            return 0;
        if (m->kind == MMK_MSG_REPLY && m->id == 0 && m->status < 0)
            return m->status; /* about the connection itself (a server limit) */
        e = mmk__client_enqueue(c, m);
        if (e) {
            if (m->fd >= 0)
                mmk__sys_close(m->fd);
            return e;
        }
    }
}

/* One synchronous call: send, wait for the reply, return its status. */
static int call(mmk_client *c, struct mmk__req *q, mmk_message *m, struct mmk__reply *raw)
{
    if (!q->id)
        q->id = take_id(c);
    int e = send_req(c, q);
    if (e == -EPIPE || e == -ECONNRESET) {
        /* The server may have said why before it hung up (a limit). */
        int fd[2];
        int n = mmk__client_read(c, 0, fd);
        if (n > 0 && mmk__client_message(c, (size_t)n, fd, m, NULL) == 0 && m->kind == MMK_MSG_REPLY &&
            m->id == 0 && m->status < 0)
            return m->status;
    }
    if (e)
        return e;
    e = wait_reply(c, q->id, m, raw);
    if (e)
        return e;
    return m->status;
}

/* ---- connection ------------------------------------------------------------ */

mmk_client *mmk_client_connect(const char *path, int timeout_ms)
{
    char def[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int e;
    if (!path) {
        e = mmk_server_default_path(def, sizeof def);
        if (e < 0) {
            errno = -e;
            return NULL;
        }
        path = def;
    }
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(sa.sun_path, path);
    mmk_client *c = calloc(1, sizeof *c);
    if (c && !(c->buf = malloc(MMK__PROTO_MAX))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
    c->ring_fd[0] = c->ring_fd[1] = -1;
    const char *rings = getenv("MMKIT_EVENT_RING");
    c->use_rings = !(rings && !strcmp(rings, "0"));
    c->fd = mmk__sys_socket(AF_UNIX, SOCK_SEQPACKET, 0);
    c->ep = c->fd < 0 ? -1 : mmk__sys_epoll_create();
    struct epoll_event sev = { .events = EPOLLIN, .data.ptr = NULL };
    e = c->fd < 0 ? c->fd : c->ep < 0 ? c->ep : mmk__sys_epoll_ctl(c->ep, EPOLL_CTL_ADD, c->fd, &sev);
    if (e) {
        if (c->ep >= 0)
            mmk__sys_close(c->ep);
        if (c->fd >= 0)
            mmk__sys_close(c->fd);
        free(c->buf);
        free(c);
        errno = -e;
        return NULL;
    }
    /* A Unix connect waits while the server's backlog is full: bound it. */
    struct timeval tv = { c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000 };
    mmk__sys_setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    e = mmk__sys_connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (e == -EAGAIN || e == -EINPROGRESS || e == -EINTR)
        e = -ETIMEDOUT;
    if (!e) {
        struct mmk__req q;
        mmk_message m;
        build_req(&q, MMK__T_HELLO, NULL, 0, 0, 0, 0);
        e = call(c, &q, &m, NULL);
    }
    if (e) {
        mmk_client_close(c);
        errno = -e;
        return NULL;
    }
    return c;
}

void mmk_client_close(mmk_client *c)
{
    if (!c)
        return;
    mmk_message m;
    while (mmk__client_dequeue(c, 0, &m))
        if (m.fd >= 0)
            mmk__sys_close(m.fd);
    mmk__client_ring_detach_all(c);
    free(c->rings);
    mmk__client_close_fds(c->ring_fd);
    if (c->ep >= 0)
        mmk__sys_close(c->ep);
    if (c->fd >= 0)
        mmk__sys_close(c->fd);
    free(c->buf);
    free(c);
}

int mmk_client_fd(const mmk_client *c)
{
    return c ? c->ep : -EINVAL;
}

size_t mmk_client_pending(const mmk_client *c)
{
    return c ? c->pending + mmk__client_ring_ready(c) : 0;
}

int mmk_client_set_timeout(mmk_client *c, int timeout_ms)
{
    if (!c || timeout_ms <= 0)
        return -EINVAL;
    c->timeout_ms = timeout_ms;
    return 0;
}

/* ---- synchronous calls ------------------------------------------------------ */

static int simple(mmk_client *c, unsigned op, const char *name, int name_needed, uint64_t a,
                  uint64_t b, unsigned mode, unsigned flags, mmk_message *m)
{
    struct mmk__req q;
    if (!c)
        return -EINVAL;
    if (name_needed && (!name || !mmk__proto_name_ok(name, strnlen(name, MMK_SEG_NAME_MAX + 1))))
        return -EINVAL;
    int e = build_req(&q, op, name, a, b, mode, flags);
    if (e)
        return e;
    return call(c, &q, m, NULL);
}

int mmk_seg_create(mmk_client *c, const char *name, uint64_t size, unsigned mode)
{
    mmk_message m;
    if (mode & ~0777u)
        return -EINVAL;
    return simple(c, MMK_OP_CREATE, name, 1, size, 0, mode, 0, &m);
}

int mmk_seg_open(mmk_client *c, const char *name, unsigned flags, mmk_seg_info *info)
{
    mmk_message m;
    if (flags & ~(unsigned)MMK_SEG_RDWR)
        return -EINVAL;
    int e = simple(c, MMK_OP_OPEN, name, 1, 0, 0, 0, flags, &m);
    if (e)
        return e;
    if (info)
        *info = m.info;
    return m.fd;
}

int mmk_seg_release(mmk_client *c, const char *name)
{
    mmk_message m;
    return simple(c, MMK_OP_RELEASE, name, 1, 0, 0, 0, 0, &m);
}

int mmk_seg_stat(mmk_client *c, const char *name, mmk_seg_info *info)
{
    mmk_message m;
    int e = simple(c, MMK_OP_STAT, name, 1, 0, 0, 0, 0, &m);
    if (!e && info)
        *info = m.info;
    return e;
}

int mmk_seg_remove(mmk_client *c, const char *name)
{
    mmk_message m;
    return simple(c, MMK_OP_REMOVE, name, 1, 0, 0, 0, 0, &m);
}

int mmk_seg_grow(mmk_client *c, const char *name, uint64_t size)
{
    mmk_message m;
    return simple(c, MMK_OP_GROW, name, 1, size, 0, 0, 0, &m);
}

/*
 * A subscription to one segment asks for its event ring (unless
 * $MMKIT_EVENT_RING=0).  A server that answers without one has subscribed
 * us to messages; a ring this side cannot map is given up with an
 * unsubscribe and the subscription made again without it.
 */
int mmk_seg_subscribe(mmk_client *c, const char *name)
{
    mmk_message m;
    if (!c || !name || !*name || !c->use_rings)
        return simple(c, MMK_OP_SUBSCRIBE, name && *name ? name : NULL, name && *name, 0, 0, 0, 0,
                      &m);
    struct mmk__req q;
    if (!mmk__proto_name_ok(name, strnlen(name, MMK_SEG_NAME_MAX + 1)))
        return -EINVAL;
    build_req(&q, MMK_OP_SUBSCRIBE, name, 0, 0, 0, MMK__SUB_RING);
    q.id = c->ring_id = take_id(c);
    int e = call(c, &q, &m, NULL);
    c->ring_id = 0;
    if (e == -EINVAL) /* a server without rings refuses the flag */
        return simple(c, MMK_OP_SUBSCRIBE, name, 1, 0, 0, 0, 0, &m);
    if (e || c->ring_fd[0] < 0)
        return e; /* no ring came: the subscription is on the socket */
    if (mmk__client_ring_attach(c, name) == 0)
        return 0;
    e = simple(c, MMK_OP_UNSUBSCRIBE, name, 1, 0, 0, 0, 0, &m);
    return e ? e : simple(c, MMK_OP_SUBSCRIBE, name, 1, 0, 0, 0, 0, &m);
}

int mmk_seg_unsubscribe(mmk_client *c, const char *name)
{
    mmk_message m;
    int e = simple(c, MMK_OP_UNSUBSCRIBE, name && *name ? name : NULL, name && *name, 0, 0, 0, 0, &m);
    if (!e && name && *name)
        mmk__client_ring_detach(c, name);
    return e;
}

int mmk_seg_publish(mmk_client *c, const char *name, uint64_t offset, uint64_t length,
                    uint64_t *version)
{
    mmk_message m;
    int e = simple(c, MMK_OP_PUBLISH, name, 1, offset, length, 0, 0, &m);
    if (!e && version)
        *version = m.version;
    return e;
}

int mmk_seg_list(mmk_client *c, int (*fn)(const mmk_seg_info *info, void *ctx), void *ctx)
{
    char cursor[MMK_SEG_NAME_MAX + 1] = "";
    if (!c || !fn)
        return -EINVAL;
    for (;;) {
        struct mmk__req q;
        struct mmk__reply r;
        mmk_message m;
        build_req(&q, MMK_OP_LIST, cursor, 0, 0, 0, 0);
        int e = call(c, &q, &m, &r);
        if (e)
            return e;
        size_t pos = 0;
        mmk_seg_info info;
        for (uint32_t i = 0; i < r.count; i++) {
            mmk__proto_next_info(&r, &pos, &info); /* checked by the parser */
            e = fn(&info, ctx);
            if (e)
                return e;
            memcpy(cursor, info.name, sizeof cursor);
        }
        if (!r.more || r.count == 0)
            return 0;
    }
}

/* ---- asynchronous calls ----------------------------------------------------- */

int mmk_client_submit(mmk_client *c, const mmk_request *req)
{
    struct mmk__req q;
    if (!c || !req || req->op < MMK_OP_CREATE || req->op > MMK_OP_PING || req->op == MMK_OP_LIST)
        return -EINVAL;
    int named = req->op != MMK_OP_PING && req->op != MMK_OP_SUBSCRIBE &&
                req->op != MMK_OP_UNSUBSCRIBE;
    const char *name = req->name && *req->name ? req->name : NULL;
    if (named && (!name || !mmk__proto_name_ok(name, strnlen(name, MMK_SEG_NAME_MAX + 1))))
        return -EINVAL;
    if (name && !mmk__proto_name_ok(name, strnlen(name, MMK_SEG_NAME_MAX + 1)))
        return -EINVAL;
    if ((req->op == MMK_OP_OPEN && (req->flags & ~(unsigned)MMK_SEG_RDWR)) ||
        (req->op != MMK_OP_OPEN && req->flags) || (req->op == MMK_OP_CREATE && (req->mode & ~0777u)) ||
        (req->op != MMK_OP_CREATE && req->mode))
        return -EINVAL;
    uint64_t a = req->op == MMK_OP_PUBLISH ? req->offset : req->size;
    build_req(&q, req->op, name, a, req->length, req->mode, req->flags);
    q.id = take_id(c);
    int e = send_req(c, &q);
    return e ? e : (int)q.id;
}
