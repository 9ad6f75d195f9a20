/*
 * http_feed.h - the event backlog behind /events (internal).
 *
 * A ring of the last `cap` events, each already formatted as one SSE event
 * ("id: N\nevent: KIND\ndata: {...}\n\n"), shared by every stream: a stream
 * is only a position in the ring, so an idle or slow stream costs no copy of
 * the events it has not read yet.  Positions count events pushed since the
 * feed was made (0, 1, 2, ...); sequence numbers are the server's and only
 * need to increase.
 */
#ifndef MMK_SERVER_HTTP_FEED_H
#define MMK_SERVER_HTTP_FEED_H

#include <stddef.h>
#include <stdint.h>

struct mmk__feed_event {
    uint64_t seq;
    char *name;         /* the segment, for ?segment= filters */
    char *text;         /* the formatted SSE event */
    size_t len;
};

struct mmk__feed;

/* NULL with errno ENOMEM or EINVAL (cap 0). */
struct mmk__feed *mmk__feed_new(unsigned cap);
void mmk__feed_free(struct mmk__feed *f);

/* Append one event (copies name and text); the oldest one goes when the
 * ring is full.  seq must be greater than every earlier one (-EINVAL).
 * 0 or -ENOMEM (then nothing changed). */
int mmk__feed_push(struct mmk__feed *f, uint64_t seq, const char *name,
                   const char *text, size_t len);

/* Position of the next event to be pushed, and of the oldest one kept. */
uint64_t mmk__feed_end(const struct mmk__feed *f);
uint64_t mmk__feed_begin(const struct mmk__feed *f);
/* Sequence number of the last event pushed (0 before any). */
uint64_t mmk__feed_last_seq(const struct mmk__feed *f);

/* The event at position pos, or NULL if it was dropped (pos < begin) or
 * not pushed yet (pos >= end).  Valid until the next push. */
const struct mmk__feed_event *mmk__feed_at(const struct mmk__feed *f, uint64_t pos);

/*
 * Where a client that saw every event up to sequence number last_id goes
 * on: *pos is the first kept event after it.  Returns 0, or 1 when events
 * after last_id were already dropped or last_id is from the future (a
 * restarted server): then the client must be told to start over (*pos is
 * the end, the live edge).
 */
int mmk__feed_resume(const struct mmk__feed *f, uint64_t last_id, uint64_t *pos);

#endif
