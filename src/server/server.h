/*
 * server.h - mmkitd internals shared by the files of src/server/.
 *
 *   loop.c     the one epoll loop: descriptor watches and timers
 *   segtab.c   the segment table: sealed memfds, names, modes, access checks
 *   events.c   the event stream: sequence numbers, bounded backlog, sinks
 *   seg_ring.c a segment's event ring (shared memory + one bell) for its subscribers
 *   conn.c     client connections: accept, receive, bounded send queues,
 *              hello timeout, detach on close, event fan-out to subscribers
 *   handlers.c one function per request
 *   persist.c  --state-dir: the index and segment contents on disk
 *   server.c   start-up (socket or LISTEN_FDS), signals, shutdown
 *
 * Everything runs on one thread; nothing here is thread-safe, nothing
 * needs to be.  The server's state is one object (struct mmk__srv).
 */
#ifndef MMK_SERVER_H
#define MMK_SERVER_H

#include "mmkit.h"
#include "proto.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- options (filled by the CLI) ----------------------------------------- */

struct mmk__srv_opts {
    const char *socket_path;   /* NULL: mmk_server_default_path */
    const char *state_dir;     /* NULL: no persistence */
    int         max_clients;   /* 0: 4096 */
    int         max_per_uid;   /* connections of one non-root uid, 0: 1024 */
    int         max_segments;  /* 0: 65536 */
    uint64_t    max_size;      /* per segment, 0: 1 TiB */
    int         hello_ms;      /* a new connection must say hello within this, 0: 5000 */
    int         backlog;       /* events kept for replay, 0: 4096 */
    int         ready_fd;      /* >= 0: write one byte there once serving, then close it */
    int         no_rings;      /* --no-event-rings: every subscriber gets event messages */
    int         quiet;         /* no start/stop lines on stderr */
    int         verbose;       /* a line per closed connection too */
    const char *http_addr;     /* --http ADDR:PORT, NULL: no HTTP feed */
    int         http_any;      /* --http-any: a non-loopback address is allowed */
    int         http_all;      /* --http-all: show every segment, not only other-readable ones */
    int         http_heartbeat_ms; /* comment line on idle /events streams, 0: 15000 */
};

/* Run a server until SIGTERM, SIGINT or SIGHUP; then persist (with a state dir) and
 * return the process exit status.  Prints one line per fatal error. */
int mmk__server_run(const struct mmk__srv_opts *opts);

/* ---- loop.c --------------------------------------------------------------- */

struct mmk__watch {
    int fd;
    void (*fn)(struct mmk__watch *w, uint32_t events);
};

struct mmk__timer {
    int64_t deadline;          /* monotonic ms */
    size_t  slot;              /* heap index + 1; 0 when not armed */
    void (*fn)(struct mmk__timer *t);
};

struct mmk__loop {
    int epfd;
    struct mmk__timer **heap;
    size_t ntimers, cap;
    int stop;
    void (*after_batch)(void *ctx); /* runs after each batch of events */
    void *after_ctx;
};

int64_t mmk__now_ms(void);
int  mmk__loop_init(struct mmk__loop *l);
void mmk__loop_fini(struct mmk__loop *l);
/* Watch w->fd for events (EPOLLIN, EPOLLOUT, ...); mod changes them. */
int  mmk__loop_add(struct mmk__loop *l, struct mmk__watch *w, uint32_t events);
int  mmk__loop_mod(struct mmk__loop *l, struct mmk__watch *w, uint32_t events);
void mmk__loop_del(struct mmk__loop *l, struct mmk__watch *w);
/* Arm t to fire once after ms (re-arming moves it); cancel is idempotent. */
int  mmk__timer_set(struct mmk__loop *l, struct mmk__timer *t, int64_t ms);
void mmk__timer_cancel(struct mmk__loop *l, struct mmk__timer *t);
/* Dispatch until l->stop is set.  0, or -errno if epoll fails. */
int  mmk__loop_run(struct mmk__loop *l);

/* ---- segtab.c ------------------------------------------------------------- */

struct mmk__conn;

struct mmk__cred {
    uid_t uid;
    gid_t gid;
    pid_t pid;
    int   ngroups;
    gid_t groups[64];  /* supplementary groups (SO_PEERGROUPS) */
};

struct mmk__seg {
    char     name[MMK_SEG_NAME_MAX + 1];
    int      fd;              /* the memfd, read-write, sealed */
    uint64_t size;
    uint32_t mode, uid, gid;
    uint64_t version, mtime_ns;
    uint32_t holders;
    struct mmk__conn **subs;  /* subscribed connections */
    uint8_t *subring;         /* per entry of subs: 1 if it reads the event ring */
    size_t   nsubs, capsubs;
    size_t   nringsubs;       /* entries of subs with subring set */
    struct mmk__ring *ring;   /* the event ring, while ring subscribers exist */
    int      refs;            /* the table's reference + one per holding connection */
    int      removed;
};

struct mmk__segtab {
    struct mmk__seg **v;      /* sorted by name */
    size_t n, cap, max;
    uint64_t max_size;
};

void mmk__segtab_init(struct mmk__segtab *t, size_t max, uint64_t max_size);
void mmk__segtab_fini(struct mmk__segtab *t);
struct mmk__seg *mmk__segtab_find(const struct mmk__segtab *t, const char *name);
/* Index of the first segment whose name sorts after name ("" : 0). */
size_t mmk__segtab_after(const struct mmk__segtab *t, const char *name);
/* Create a sealed memfd segment.  -EEXIST, -EFBIG, -ENOSPC (table full), -errno. */
int  mmk__segtab_create(struct mmk__segtab *t, const char *name, uint64_t size, uint32_t mode,
                        uint32_t uid, uint32_t gid, struct mmk__seg **out);
/* Unlink the name; the segment lives on while references remain. */
void mmk__segtab_remove(struct mmk__segtab *t, struct mmk__seg *s);
void mmk__seg_ref(struct mmk__seg *s);
void mmk__seg_unref(struct mmk__seg *s);
int  mmk__seg_grow(struct mmk__seg *s, uint64_t size, uint64_t max_size);
/* A memfd labelled "prefix:name", size bytes, mode 0600, sealable and
 * non-executable where the kernel can (no seals added yet). */
int  mmk__memfd_new(const char *prefix, const char *name, uint64_t size);
/* A new open file description of the memfd fd (through /proc/self/fd),
 * opened with flags: what a holder gets instead of a dup of ours. */
int  mmk__memfd_reopen(int fd, int flags);
/* A new open file description of the segment: O_RDONLY or O_RDWR. */
int  mmk__seg_reopen(const struct mmk__seg *s, int rw);
/* 0 if cred may access s for want (4 read, 2 write, 6 both), else -EACCES. */
int  mmk__seg_access(uint32_t mode, uint32_t uid, uint32_t gid, const struct mmk__cred *c, int want);
void mmk__seg_info(const struct mmk__seg *s, mmk_seg_info *info);
/* Add c to s's subscribers.  *ring in: c asks to read s's event ring
 * rather than messages; out: it does (0 if the ring could not be made). */
int  mmk__seg_sub_add(struct mmk__seg *s, struct mmk__conn *c, int *ring);
/* Remove c; the ring goes with its last reader. */
void mmk__seg_sub_del(struct mmk__seg *s, struct mmk__conn *c);
/* 1 if entry i of s->subs reads the ring. */
int  mmk__seg_sub_ring(const struct mmk__seg *s, size_t i);
/* Drop every subscriber (the segment was removed) and the ring. */
void mmk__seg_sub_clear(struct mmk__seg *s);
uint64_t mmk__realtime_ns(void);

/* ---- seg_ring.c --------------------------------------------------------------- */

struct mmk__ring;
struct mmk__ring *mmk__ring_new(const char *segname);
/* Close the ring (readers see it closed), wake its readers, free it. */
void mmk__ring_free(struct mmk__ring *r);
/* Write ev into the ring and wake every reader. */
void mmk__ring_put(struct mmk__ring *r, const mmk_seg_event *ev);
void mmk__ring_bell(struct mmk__ring *r);
/* Positions written so far: where a new reader starts. */
uint64_t mmk__ring_head(const struct mmk__ring *r);
/* New descriptors for a reader: the ring read-only, and the bell. */
int  mmk__ring_handout(const struct mmk__ring *r, int *ring_fd, int *bell_fd);

/* ---- events.c --------------------------------------------------------------
 *
 * Every change to a segment becomes one event (mmk_seg_event: kind, range,
 * and the segment's info right after the change) with the next sequence
 * number.  The last `backlog` events are kept in a ring, so a consumer that
 * knows the last sequence it saw can catch up (mmk__events_replay), and
 * every sink registered gets each event as it is emitted.  The socket
 * subscribers are one sink; an HTTP/SSE front would be another, on the
 * same loop.
 */

typedef void (*mmk__event_sink)(const mmk_seg_event *ev, void *ctx);

struct mmk__events {
    mmk_seg_event *ring;
    size_t cap;
    uint64_t next_seq;       /* seq of the next event; the first is 1 */
    struct { mmk__event_sink fn; void *ctx; } sinks[8];
    int nsinks;
};

int  mmk__events_init(struct mmk__events *e, size_t backlog, uint64_t first_seq);
void mmk__events_fini(struct mmk__events *e);
int  mmk__events_add_sink(struct mmk__events *e, mmk__event_sink fn, void *ctx);
void mmk__events_del_sink(struct mmk__events *e, mmk__event_sink fn, void *ctx);
/* Record and fan out one event about s; returns its seq. */
uint64_t mmk__events_emit(struct mmk__events *e, unsigned kind, const struct mmk__seg *s,
                          uint64_t offset, uint64_t length);
/* Sequence number of the last event emitted (0 if none). */
uint64_t mmk__events_last(const struct mmk__events *e);
/* Call fn for every kept event with seq > after, oldest first.  -ERANGE
 * (and no call) if events after `after` were already dropped from the ring,
 * or `after` is beyond the last event (an id from a previous run without a
 * state dir): the consumer must resynchronise (list the segments). */
int  mmk__events_replay(const struct mmk__events *e, uint64_t after, mmk__event_sink fn, void *ctx);

/* ---- conn.c --------------------------------------------------------------- */

struct mmk__hold {
    struct mmk__seg *seg;
    uint32_t count;
};

struct mmk__outmsg {
    struct mmk__outmsg *next;
    int    fd[2];              /* descriptors to pass, or -1; owned */
    size_t len;
    uint8_t data[];
};

struct mmk__srv;

struct mmk__conn {
    struct mmk__watch w;
    struct mmk__timer hello_timer;
    struct mmk__srv *srv;
    struct mmk__cred cred;
    int hello;                 /* said hello */
    int dead;                  /* closed; freed after the current batch */
    int want_out;              /* EPOLLOUT armed */
    struct mmk__outmsg *out_head, *out_tail;
    size_t nout;
    struct mmk__hold *holds;
    size_t nholds, capholds;
    struct mmk__seg **subs;    /* subscriptions to single segments (no references:
                                  a removed segment's subscriptions are dropped) */
    size_t nsubs, capsubs;
    uint64_t last_event;       /* seq of the last event queued here (no duplicates) */
    int    bad;                /* malformed messages so far */
    int sub_all;               /* subscribed to every readable segment */
    struct mmk__conn *prev, *next;  /* all live connections */
    struct mmk__conn *next_dead;
    const char *doomed;        /* to be closed after this batch, and why */
    struct mmk__conn *next_doomed;
};

/* Per-connection limits. */
#define MMK__MAX_OUT   1024    /* queued messages before the connection is dropped */
#define MMK__MAX_SUBS  1024
#define MMK__MAX_HOLDS 4096

void mmk__conn_accept(struct mmk__srv *srv);
/* Queue (or send at once) a message; fd (or -1) is consumed.  A connection
 * whose queue passes MMK__MAX_OUT is closed. */
void mmk__conn_send(struct mmk__conn *c, const void *buf, size_t len, int fd);
/* The same with two descriptors (or -1), both consumed. */
void mmk__conn_send2(struct mmk__conn *c, const void *buf, size_t len, int fd0, int fd1);
void mmk__conn_close(struct mmk__conn *c, const char *why);
/* After each batch: close doomed connections, free closed ones, write the
 * index if it changed. */
void mmk__conn_after_batch(void *srv);
/* The event sink that pushes events to subscribed connections. */
void mmk__conn_event_sink(const mmk_seg_event *ev, void *srv);
/* Drop every subscription to s (it was removed). */
void mmk__conn_drop_subs(struct mmk__srv *srv, struct mmk__seg *s);

/* ---- handlers.c ----------------------------------------------------------- */

/* Handle one parsed request; always queues exactly one reply. */
void mmk__handle(struct mmk__srv *srv, struct mmk__conn *c, const struct mmk__req *q);
/* Reply with a status only. */
void mmk__reply_status(struct mmk__conn *c, uint32_t id, uint16_t op, int status);
/* Release everything a closing connection holds (detach events). */
void mmk__release_all(struct mmk__srv *srv, struct mmk__conn *c);

/* ---- persist.c ------------------------------------------------------------ */

/* Load DIR's index and contents into the table.  0 or -errno; a damaged
 * entry is skipped with a line on stderr, never trusted. */
int mmk__persist_load(struct mmk__srv *srv);
/* Write the index (names, sizes, modes, owners, versions) atomically. */
int mmk__persist_index(struct mmk__srv *srv);
/* Write every segment's contents and the index (at shutdown). */
int mmk__persist_all(struct mmk__srv *srv);
/* The segment name is gone: remove its contents file. */
void mmk__persist_forget(struct mmk__srv *srv, const char *name);

/* ---- the server object ------------------------------------------------------ */

struct mmk__srv {
    struct mmk__srv_opts opts;
    struct mmk__loop loop;
    struct mmk__segtab segs;
    struct mmk__events events;
    struct mmk__watch listen_w, signal_w;
    struct mmk__conn *conns;       /* live connections */
    size_t nconns;
    struct mmk__conn **suball;     /* connections subscribed to everything */
    size_t nsuball, capsuball;
    struct mmk__conn *dead;        /* closed during this batch */
    struct mmk__conn *doomed;      /* to close after this batch (failed while
                                      an event was being fanned out) */
    int    index_dirty;            /* persist the index after this batch */
    int    own_socket;             /* we bound the path (unlink it at exit) */
    struct mmk__http_srv *http;    /* the HTTP feed, or NULL (http_srv.c) */
    uint8_t buf[MMK__PROTO_MAX];   /* receive buffer */
    uint8_t out[MMK__PROTO_MAX];   /* reply buffer */
};

/* ---- http_srv.c: the HTTP push feed on this loop ---------------------------- */

struct mmk__http_srv;
/* Start the feed when opts.http_addr is set (0 when it is not). */
int  mmk__http_srv_start(struct mmk__srv *srv);
void mmk__http_srv_stop(struct mmk__srv *srv);

/* One line to stderr ("mmkitd: ..."): mmk__log for news (not with --quiet),
 * mmk__err for errors (always). */
void mmk__log(const struct mmk__srv *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mmk__err(const struct mmk__srv *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
