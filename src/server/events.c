/*
 * events.c - the server's event stream: one sequence of events about
 * segments (create, write, remove, attach, detach), numbered 1, 2, 3, ...
 * with no gaps, the last `cap` of them kept in a ring.
 *
 * Consumers are sinks called synchronously by mmk__events_emit, on the
 * loop's thread.  A sink must not block: it queues what it needs to send
 * (the socket sink copies the encoded event into each subscriber's bounded
 * queue).  A consumer that fell behind, or reconnects with "the last seq I
 * saw" (SSE's Last-Event-ID), catches up with mmk__events_replay, or learns
 * with -ERANGE that the ring no longer reaches back that far.
 */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mmk__events_init(struct mmk__events *e, size_t backlog, uint64_t first_seq)
{
    memset(e, 0, sizeof *e);
    e->cap = backlog ? backlog : 4096;
    e->ring = calloc(e->cap, sizeof *e->ring);
    if (!e->ring)
        return -ENOMEM;
    e->next_seq = first_seq ? first_seq : 1;
    return 0;
}

void mmk__events_fini(struct mmk__events *e)
{
    free(e->ring);
    memset(e, 0, sizeof *e);
}

int mmk__events_add_sink(struct mmk__events *e, mmk__event_sink fn, void *ctx)
{
    if (e->nsinks == (int)(sizeof e->sinks / sizeof e->sinks[0]))
        return -ENOSPC;
    e->sinks[e->nsinks].fn = fn;
    e->sinks[e->nsinks].ctx = ctx;
    e->nsinks++;
    return 0;
}

void mmk__events_del_sink(struct mmk__events *e, mmk__event_sink fn, void *ctx)
{
    for (int i = 0; i < e->nsinks; i++) {
        if (e->sinks[i].fn == fn && e->sinks[i].ctx == ctx) {
            memmove(&e->sinks[i], &e->sinks[i + 1], (size_t)(e->nsinks - i - 1) * sizeof e->sinks[0]);
            e->nsinks--;
            return;
        }
    }
}

uint64_t mmk__events_emit(struct mmk__events *e, unsigned kind, const struct mmk__seg *s,
                          uint64_t offset, uint64_t length)
{
    uint64_t seq = e->next_seq++;
    mmk_seg_event *ev = &e->ring[seq % e->cap];
    memset(ev, 0, sizeof *ev);
    ev->seq = seq;
    ev->kind = kind;
    ev->offset = offset;
    ev->length = length;
    mmk__seg_info(s, &ev->info);
    for (int i = 0; i < e->nsinks; i++)
        e->sinks[i].fn(ev, e->sinks[i].ctx);
    return seq;
}

uint64_t mmk__events_last(const struct mmk__events *e)
{
    return e->next_seq - 1;
}

int mmk__events_replay(const struct mmk__events *e, uint64_t after, mmk__event_sink fn, void *ctx)
{
    uint64_t last = e->next_seq - 1;
    if (after == last)
        return 0;
    if (after > last) /* an id this server never gave out: a previous run's */
        return -ERANGE;
    uint64_t oldest = last >= e->cap ? last - e->cap + 1 : 1;
    /* Events before the first one this server emitted (a restart) are gone too. */
    if (after + 1 < oldest || e->ring[(after + 1) % e->cap].seq != after + 1)
        return -ERANGE;
    for (uint64_t s = after + 1; s <= last; s++)
        fn(&e->ring[s % e->cap], ctx);
    return 0;
}
