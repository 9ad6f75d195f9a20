/*
 * loop.c - the server's one event loop: epoll for descriptors, a binary
 * min-heap of timers, and a hook that runs after every batch of events
 * (where closed connections are freed, so that no callback of the same
 * batch can meet a freed watch).
 *
 * Watches and timers are embedded in their owners (a connection holds its
 * watch and its hello timer), so arming costs no allocation beyond the
 * heap's array.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int64_t mmk__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mmk__loop_init(struct mmk__loop *l)
{
    *l = (struct mmk__loop){ .epfd = -1 };
    int fd = mmk__sys_epoll_create();
    if (fd < 0)
        return fd;
    l->epfd = fd;
    return 0;
}

void mmk__loop_fini(struct mmk__loop *l)
{
    if (l->epfd >= 0)
        mmk__sys_close(l->epfd);
    free(l->heap);
    *l = (struct mmk__loop){ .epfd = -1 };
}

int mmk__loop_add(struct mmk__loop *l, struct mmk__watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };
    return mmk__sys_epoll_ctl(l->epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int mmk__loop_mod(struct mmk__loop *l, struct mmk__watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };
    return mmk__sys_epoll_ctl(l->epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

void mmk__loop_del(struct mmk__loop *l, struct mmk__watch *w)
{
    if (w->fd >= 0)
        mmk__sys_epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

/* ---- timer heap ------------------------------------------------------------ */

static void heap_place(struct mmk__loop *l, size_t i, struct mmk__timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(struct mmk__loop *l, size_t i)
{
    struct mmk__timer *t = l->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->deadline <= t->deadline)
            break;
        heap_place(l, i, l->heap[p]);
        i = p;
    }
    heap_place(l, i, t);
}

static void sift_down(struct mmk__loop *l, size_t i)
{
    struct mmk__timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->ntimers)
            break;
        if (c + 1 < l->ntimers && l->heap[c + 1]->deadline < l->heap[c]->deadline)
            c++;
        if (l->heap[c]->deadline >= t->deadline)
            break;
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, t);
}

void mmk__timer_cancel(struct mmk__loop *l, struct mmk__timer *t)
{
    if (!t->slot)
        return;
    size_t i = t->slot - 1;
    t->slot = 0;
    struct mmk__timer *last = l->heap[--l->ntimers];
    if (i == l->ntimers)
        return;
    heap_place(l, i, last);
    sift_up(l, i);
    sift_down(l, last->slot - 1);
}

int mmk__timer_set(struct mmk__loop *l, struct mmk__timer *t, int64_t ms)
{
    mmk__timer_cancel(l, t);
    if (l->ntimers == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct mmk__timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        l->heap = h;
        l->cap = cap;
    }
    t->deadline = mmk__now_ms() + ms;
    heap_place(l, l->ntimers++, t);
    sift_up(l, l->ntimers - 1);
    return 0;
}

/* Fire the timers that are due; return ms until the next one (-1: none). */
static int run_timers(struct mmk__loop *l)
{
    int64_t now = mmk__now_ms();
    while (l->ntimers && l->heap[0]->deadline <= now) {
        struct mmk__timer *t = l->heap[0];
        mmk__timer_cancel(l, t);
        t->fn(t);
    }
    if (!l->ntimers)
        return -1;
    int64_t wait = l->heap[0]->deadline - now;
    return wait > 1 << 30 ? 1 << 30 : (int)wait;
}

int mmk__loop_run(struct mmk__loop *l)
{
    struct epoll_event evs[64];
    while (!l->stop) {
        int timeout = run_timers(l);
        if (l->after_batch)
            l->after_batch(l->after_ctx);
        if (l->stop)
            break;
        int n = mmk__sys_epoll_wait(l->epfd, evs, 64, timeout);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return n;
        for (int i = 0; i < n; i++) {
            struct mmk__watch *w = evs[i].data.ptr;
            if (w->fd >= 0) /* a watch closed earlier in this batch has fd -1 */
                w->fn(w, evs[i].events);
        }
        if (l->after_batch)
            l->after_batch(l->after_ctx);
    }
    return 0;
}
