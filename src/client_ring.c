/*
 * client_ring.c - taking the next reply or event: from the queue, from
 * the event rings of the segments subscribed to with one (src/evring.h),
 * or from the socket.
 *
 * The descriptor mmk_client_fd returns is an epoll instance holding the
 * socket (level-triggered) and every ring's bell (edge-triggered).  It is
 * readable while the socket is, and from a bell's ring until the library
 * next resets the bells, which it does (epoll_wait with timeout 0) only
 * when every ring has been read dry, then reads the rings once more: an
 * event written meanwhile is never left behind a reset edge.
 *
 * The reset is lazy.  A call with timeout 0 that finds nothing right after
 * a call that took a ring event returns at once, without a system call,
 * and leaves the bells set; the descriptor stays readable, so a poll loop
 * comes back and the next empty call resets.  A process that serves many
 * connections thus reads one event from each without a system call
 * between them, and pays the resets after the batch.
 *
 * Events of one segment arrive in order.  Events of different segments
 * come out in sequence order among those that have arrived.
 */
#include "client.h"
#include "evring.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int mmk__client_ring_attach(mmk_client *c, const char *name)
{
    int fd[2] = { c->ring_fd[0], c->ring_fd[1] };
    c->ring_fd[0] = c->ring_fd[1] = -1;
    struct stat st;
    void *map = NULL;
    int e = mmk__sys_fstat(fd[0], &st);
    if (!e && (st.st_size < MMK__EVRING_HDR || st.st_size > (1 << 30)))
        e = -EPROTO;
    /* Mapped whole and read without checks: it must never shrink under us
     * (the server seals it; anything else listening on the socket may not). */
    if (!e) {
        int seals = mmk__sys_fcntl(fd[0], F_GET_SEALS, 0);
        if (seals < 0 || !(seals & F_SEAL_SHRINK))
            e = -EPROTO;
    }
    if (!e && c->nrings == c->caprings) {
        size_t cap = c->caprings ? c->caprings * 2 : 4;
        struct mmk__ring_sub *v = realloc(c->rings, cap * sizeof *v);
        if (!v)
            e = -ENOMEM;
        else {
            c->rings = v;
            c->caprings = cap;
        }
    }
    if (!e)
        e = mmk__sys_mmap(&map, NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd[0], 0);
    if (!e && (e = mmk__evring_check(map, (size_t)st.st_size)) != 0)
        mmk__sys_munmap(map, (size_t)st.st_size);
    if (!e) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = c };
        e = mmk__sys_epoll_ctl(c->ep, EPOLL_CTL_ADD, fd[1], &ev);
        if (e)
            mmk__sys_munmap(map, (size_t)st.st_size);
    }
    mmk__sys_close(fd[0]); /* the mapping keeps the ring */
    if (e) {
        mmk__sys_close(fd[1]);
        return e;
    }
    struct mmk__ring_sub *r = &c->rings[c->nrings++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->map = map;
    r->len = (size_t)st.st_size;
    r->bell = fd[1];
    r->pos = c->ring_pos;
    return 0;
}

static void drop_ring(mmk_client *c, size_t i)
{
    struct mmk__ring_sub *r = &c->rings[i];
    /* The bell is shared with other subscribers: a close alone would leave
     * it in our epoll set. */
    mmk__sys_epoll_ctl(c->ep, EPOLL_CTL_DEL, r->bell, NULL);
    mmk__sys_close(r->bell);
    mmk__sys_munmap(r->map, r->len);
    c->rings[i] = c->rings[--c->nrings];
}

int mmk__client_ring_detach(mmk_client *c, const char *name)
{
    for (size_t i = 0; i < c->nrings; i++) {
        if (!strcmp(c->rings[i].name, name)) {
            drop_ring(c, i);
            return 1;
        }
    }
    return 0;
}

void mmk__client_ring_detach_all(mmk_client *c)
{
    while (c->nrings)
        drop_ring(c, c->nrings - 1);
}

size_t mmk__client_ring_ready(const mmk_client *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nrings; i++)
        n += (size_t)mmk__evring_ready(c->rings[i].map, c->rings[i].pos);
    return n;
}

/* The oldest queued event, or NULL. */
static const mmk_seg_event *queued_event(const mmk_client *c)
{
    for (const struct mmk__queued *q = c->head; q; q = q->next)
        if (q->m.kind == MMK_MSG_EVENT)
            return &q->m.event;
    return NULL;
}

/*
 * Take the event with the lowest sequence number among the queue's first
 * and each ring's next.  1 and *ev filled, 0 if there is none, -EOVERFLOW
 * if a ring was overwritten under us (its reader moves on to the oldest
 * event it still holds).
 */
static int take_event(mmk_client *c, mmk_seg_event *ev)
{
    const mmk_seg_event *q = queued_event(c);
    size_t best = (size_t)-1;
    uint64_t best_pos = 0;
    mmk_seg_event cand;
    for (size_t i = 0; i < c->nrings; i++) {
        struct mmk__ring_sub *r = &c->rings[i];
        uint64_t pos = r->pos;
        int got = mmk__evring_read(r->map, &pos, &cand);
        if (got < 0) {
            r->pos = pos;
            return got;
        }
        if (got == 0)
            continue;
        if ((!q || cand.seq < q->seq) && (best == (size_t)-1 || cand.seq < ev->seq)) {
            best = i;
            best_pos = pos;
            *ev = cand;
        }
    }
    if (best != (size_t)-1) {
        struct mmk__ring_sub *r = &c->rings[best];
        r->pos = best_pos;
        memcpy(ev->info.name, r->name, sizeof ev->info.name);
        if (ev->kind == MMK_EV_REMOVE)
            drop_ring(c, best); /* the server ended the subscription */
        c->lazy = 1;
        return 1;
    }
    if (q) {
        mmk_message m;
        mmk__client_dequeue(c, MMK_MSG_EVENT, &m);
        *ev = m.event;
        return 1;
    }
    for (size_t i = c->nrings; i-- > 0;)
        if (mmk__evring_done(c->rings[i].map, c->rings[i].pos))
            drop_ring(c, i); /* closed by the server, nothing left to read */
    return 0;
}

/*
 * Reset the bells, waiting up to timeout_ms for a bell or the socket: 1 if
 * the socket is readable, 0 if not (a bell rang, the time passed, or a
 * signal came), or -errno.
 */
static int wait_any(mmk_client *c, int timeout_ms)
{
    struct epoll_event evs[16];
    int n = mmk__sys_epoll_wait(c->ep, evs, 16, timeout_ms);
    if (n == -EINTR)
        return 0;
    if (n < 0)
        return n;
    c->lazy = 0;
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr == NULL)
            return 1;
    return 0;
}

/*
 * The next message: a queued one (any, or events only), a ring event, or
 * one read from the socket (replies read while waiting for an event are
 * queued).  0 and *m filled, or -ETIMEDOUT, -EOVERFLOW, -errno.
 */
static int next_message(mmk_client *c, mmk_message *m, int timeout_ms, int events_only)
{
    if (!events_only && c->head && c->head->m.kind == MMK_MSG_REPLY)
        return mmk__client_dequeue(c, MMK_MSG_REPLY, m) ? 0 : -EIO;
    int64_t deadline = mmk__client_deadline(c, timeout_ms);
    int checked = 0;
    for (;;) {
        memset(m, 0, sizeof *m);
        m->fd = -1;
        int got = take_event(c, &m->event);
        if (got) {
            m->kind = MMK_MSG_EVENT;
            return got < 0 ? got : 0;
        }
        /* Nothing queued is left for this call: take_event had the events,
         * a reply at the head was taken on entry, and one behind an event
         * waits for a later call (this loop queues only events). */
        if (timeout_ms == 0 && c->lazy) {
            c->lazy = 0; /* the bells stay set: the descriptor still says "look" */
            return -ETIMEDOUT;
        }
        int left = 0;
        if (checked) {
            int64_t l = deadline - mmk__client_now_ms();
            if (l <= 0)
                return -ETIMEDOUT;
            left = l > 1 << 30 ? 1 << 30 : (int)l;
        }
        int w = wait_any(c, left);
        if (w < 0)
            return w;
        checked = 1;
        if (!w)
            continue; /* the rings are read again after every reset */
        int fd[2];
        int n = mmk__client_read(c, mmk__client_now_ms(), fd);
        if (n == -ETIMEDOUT)
            continue; /* another reader took it */
        if (n < 0)
            return n;
        int e = mmk__client_message(c, (size_t)n, fd, m, NULL);
        if (e)
            return e;
        if (!events_only || m->kind == MMK_MSG_EVENT) {
            if (m->kind == MMK_MSG_EVENT && queued_event(c)) {
                /* Older events wait in the queue: keep order. */
                e = mmk__client_enqueue(c, m);
                if (e)
                    return e;
                continue;
            }
            return 0;
        }
        e = mmk__client_enqueue(c, m);
        if (e) {
            if (m->fd >= 0)
                mmk__sys_close(m->fd);
            return e;
        }
    }
}

int mmk_seg_next_event(mmk_client *c, mmk_seg_event *ev, int timeout_ms)
{
    mmk_message m;
    if (!c || !ev)
        return -EINVAL;
    int e = next_message(c, &m, timeout_ms, 1);
    if (!e)
        *ev = m.event;
    return e;
}

int mmk_client_recv(mmk_client *c, mmk_message *m, int timeout_ms)
{
    if (!c || !m)
        return -EINVAL;
    return next_message(c, m, timeout_ms, 0);
}
