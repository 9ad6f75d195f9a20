/*
 * http_feed.c - a bounded ring of formatted events, shared by all streams.
 */
#include "http_feed.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mmk__feed {
    struct mmk__feed_event *ring;
    unsigned cap;
    uint64_t begin, end;        /* positions kept: [begin, end) */
    uint64_t last_seq;          /* seq of position end - 1 (0: none yet) */
    uint64_t dropped_seq;       /* seq of the last event dropped (0: none) */
};

struct mmk__feed *mmk__feed_new(unsigned cap)
{
    if (cap == 0) {
        errno = EINVAL;
        return NULL;
    }
    struct mmk__feed *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->ring = calloc(cap, sizeof *f->ring);
    if (!f->ring) {
        free(f);
        errno = ENOMEM;
        return NULL;
    }
    f->cap = cap;
    return f;
}

static void slot_clear(struct mmk__feed_event *e)
{
    free(e->name);
    free(e->text);
    memset(e, 0, sizeof *e);
}

void mmk__feed_free(struct mmk__feed *f)
{
    if (!f)
        return;
    for (unsigned i = 0; i < f->cap; i++)
        slot_clear(&f->ring[i]);
    free(f->ring);
    free(f);
}

int mmk__feed_push(struct mmk__feed *f, uint64_t seq, const char *name,
                   const char *text, size_t len)
{
    if (seq == 0 || seq <= f->last_seq)
        return -EINVAL;
    size_t nlen = strlen(name);
    char *n = malloc(nlen + 1);
    char *t = malloc(len + 1);
    if (!n || !t) {
        free(n);
        free(t);
        return -ENOMEM;
    }
    memcpy(n, name, nlen + 1);
    memcpy(t, text, len);
    t[len] = '\0';

    struct mmk__feed_event *e = &f->ring[f->end % f->cap];
    if (f->end - f->begin == f->cap) {
        f->dropped_seq = e->seq;
        slot_clear(e);
        f->begin++;
    }
    e->seq = seq;
    e->name = n;
    e->text = t;
    e->len = len;
    f->end++;
    f->last_seq = seq;
    return 0;
}

uint64_t mmk__feed_end(const struct mmk__feed *f)
{
    return f->end;
}

uint64_t mmk__feed_begin(const struct mmk__feed *f)
{
    return f->begin;
}

uint64_t mmk__feed_last_seq(const struct mmk__feed *f)
{
    return f->last_seq;
}

const struct mmk__feed_event *mmk__feed_at(const struct mmk__feed *f, uint64_t pos)
{
    if (pos < f->begin || pos >= f->end)
        return NULL;
    return &f->ring[pos % f->cap];
}

int mmk__feed_resume(const struct mmk__feed *f, uint64_t last_id, uint64_t *pos)
{
    *pos = f->end;
    if (last_id > f->last_seq || last_id < f->dropped_seq)
        return 1;
    /* Binary search for the first kept event with seq > last_id: the ring
     * holds increasing sequence numbers. */
    uint64_t lo = f->begin, hi = f->end;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (f->ring[mid % f->cap].seq > last_id)
            hi = mid;
        else
            lo = mid + 1;
    }
    *pos = lo;
    return 0;
}
