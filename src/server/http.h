/*
 * http.h - mmkitd's HTTP push feed (internal to the server).
 *
 * The server's change events served to browsers and curl as Server-Sent
 * Events, plus a JSON view of the segments and one self-contained live page:
 *
 *     GET /                 the live page (from memory)
 *     GET /events           text/event-stream; ?segment=NAME filters;
 *                           Last-Event-ID (or ?since=N) resumes
 *     GET /segments         JSON array of the visible segments
 *     GET /segments/NAME    one of them, or 404 with a JSON error
 *
 * The feed runs inside the server's one event loop and starts no thread:
 *
 *     struct mmk__http *h = mmk__http_open(&cfg, &source);
 *     epoll_ctl(loop, EPOLL_CTL_ADD, mmk__http_fd(h), EPOLLIN ...);
 *     for (;;) {
 *         int t = min(loop timeout, mmk__http_timeout(h));
 *         epoll_wait(loop, ..., t);
 *         ...
 *         mmk__http_run(h);                // when its fd is ready or t ran out
 *     }
 *     mmk__http_publish(h, &event);        // from the server's change paths;
 *                                          // then mmk__http_run before waiting
 *     mmk__http_close(h);
 *
 * The HTTP side has no peer credentials: it shows only segments whose mode
 * lets "other" read (S_IROTH), unless MMK__HTTP_ALL.  It never serves a
 * segment's contents.  Every call here is for the loop's thread only.
 */
#ifndef MMK_SERVER_HTTP_H
#define MMK_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

enum mmk__http_kind {
    MMK__HTTP_CREATE,
    MMK__HTTP_WRITE,
    MMK__HTTP_REMOVE,
    MMK__HTTP_ATTACH,
    MMK__HTTP_DETACH,
    MMK__HTTP_KINDS
};

/* "create", "write", ... ; NULL for a kind out of range. */
const char *mmk__http_kind_name(enum mmk__http_kind kind);

/* One segment as the HTTP side sees it.  name is NUL-terminated. */
struct mmk__http_seg {
    const char *name;
    uint64_t size;
    uint32_t mode;          /* permission bits (0777) */
    uint32_t uid, gid;      /* owner */
    uint64_t version;
    uint32_t holders;       /* descriptors handed out and still open */
    uint32_t subscribers;
};

struct mmk__http_event {
    uint64_t seq;           /* the server's sequence number; 0: the feed numbers it */
    enum mmk__http_kind kind;
    struct mmk__http_seg seg;   /* the segment after the change */
    uint64_t offset, length;    /* MMK__HTTP_WRITE: the range written (length 0: all) */
};

/*
 * What the feed asks of the server.  Both run on the loop's thread, inside
 * mmk__http_run; the strings they hand out need only live until they return.
 */
struct mmk__http_source {
    void *ctx;
    /* Call emit(arg, seg) for every segment, in any order; stop early when
     * emit returns non-zero and return that value.  0 or -errno. */
    int (*each)(void *ctx, int (*emit)(void *arg, const struct mmk__http_seg *seg), void *arg);
    /* Fill *out for the segment called name: 0, or -ENOENT. */
    int (*find)(void *ctx, const char *name, struct mmk__http_seg *out);
};

enum {
    MMK__HTTP_ANY = 1u << 0,    /* allow a non-loopback listen address */
    MMK__HTTP_ALL = 1u << 1,    /* show every segment, not only other-readable ones */
};

struct mmk__http_config {
    const char *addr;           /* "127.0.0.1:8077", "[::1]:8077"; port 0 picks one */
    unsigned flags;             /* MMK__HTTP_* */
    unsigned max_conns;         /* HTTP connections at once (503 beyond); 0: 256 */
    unsigned timeout_s;         /* a request not complete by then is closed; 0: 10 */
    unsigned heartbeat_ms;      /* comment line on every stream; 0: 15000 */
    unsigned backlog;           /* events kept for Last-Event-ID; 0: 1024 */
};

struct mmk__http;

/* Bind and listen.  NULL with errno set: EINVAL (bad address or flags),
 * EACCES (not loopback without MMK__HTTP_ANY), EADDRINUSE, ENOMEM, ... */
struct mmk__http *mmk__http_open(const struct mmk__http_config *cfg,
                                 const struct mmk__http_source *src);
/* Stop serving: every connection is closed.  Never fails. */
void mmk__http_close(struct mmk__http *h);

/* One descriptor to wait on for input (EPOLLIN). */
int mmk__http_fd(const struct mmk__http *h);
/* Milliseconds until mmk__http_run must run even if its fd stays quiet
 * (timeouts, heartbeats); never -1. */
int mmk__http_timeout(struct mmk__http *h);
/* Accept, read, answer, stream: whatever is ready, without blocking. */
void mmk__http_run(struct mmk__http *h);

/* Hand one change to every stream that wants it (and to the backlog).
 * The streams write it from the next mmk__http_run, which the loop must
 * call before it waits again (the fd does not become ready for it).
 * Returns the event's sequence number, or 0 when it is not shown over HTTP
 * (a segment "other" may not read).  Never blocks; a stream too far behind
 * is dropped. */
uint64_t mmk__http_publish(struct mmk__http *h, const struct mmk__http_event *ev);

/* Close every event stream now, as a lost connection would (a browser
 * reconnects with Last-Event-ID).  For tests of that path. */
void mmk__http_drop_streams(struct mmk__http *h);

/* The address actually bound, as a URL ("http://127.0.0.1:8077/"). */
const char *mmk__http_url(const struct mmk__http *h);

struct mmk__http_stats {
    unsigned conns;             /* HTTP connections open */
    unsigned streams;           /* of which event streams */
    uint64_t refused;           /* 503 answers (connection limit) */
    uint64_t dropped;           /* streams dropped for falling behind */
    uint64_t seq;               /* the last event's sequence number */
};
void mmk__http_stats(const struct mmk__http *h, struct mmk__http_stats *out);

#endif
