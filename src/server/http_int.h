/*
 * http_int.h - state shared by the HTTP feed's files (internal):
 * http.c (listening, connections, the loop), http_route.c (requests and
 * answers), http_sse.c (event streams).
 */
#ifndef MMK_SERVER_HTTP_INT_H
#define MMK_SERVER_HTTP_INT_H

#include "http.h"
#include "http_feed.h"

#include <microhttpd.h>
#include <stdbool.h>

#define MMK__HTTP_HEADER_MAX 8192       /* request line + headers */
#define MMK__HTTP_POOL      16384       /* libmicrohttpd memory per connection */
#define MMK__HTTP_BLOCK      2048       /* stream read block */
#define MMK__HTTP_EVENT_MAX  4096       /* one formatted event */

struct mmk__sse;

struct mmk__http {
    struct mmk__http_config cfg;
    struct mmk__http_source src;
    struct MHD_Daemon *daemon;
    int listen_fd;
    int epfd;                   /* listen_fd + libmicrohttpd's epoll fd */
    struct mmk__feed *feed;
    char url[80];

    unsigned conns;             /* connections libmicrohttpd holds */
    struct mmk__sse *streams;   /* every open event stream */
    unsigned nstreams;
    uint64_t beat;              /* heartbeats due so far */
    uint64_t next_beat_ms;      /* CLOCK_MONOTONIC */
    uint64_t refused, dropped;
    uint64_t own_seq;           /* numbering for events published with seq 0 */
};

/* The request handler libmicrohttpd calls (http_route.c). */
enum MHD_Result mmk__http_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls);

/* Queue a small answer: status, content type and body (copied). */
enum MHD_Result mmk__http_answer(struct MHD_Connection *conn, unsigned status,
                                 const char *type, const char *body, size_t len);
/* Queue {"error":msg} with status. */
enum MHD_Result mmk__http_error(struct MHD_Connection *conn, unsigned status,
                                const char *msg);

/* Whether the HTTP side shows this segment. */
bool mmk__http_visible(const struct mmk__http *h, const struct mmk__http_seg *seg);

/*
 * Event streams (http_sse.c).  mmk__sse_start queues the stream answer for
 * GET /events; filter is the ?segment= value or NULL; last_id the
 * Last-Event-ID (have_last false when none was sent).
 */
enum MHD_Result mmk__sse_start(struct mmk__http *h, struct MHD_Connection *conn,
                               const char *filter, bool have_last, uint64_t last_id);
/* After an event was pushed to the feed: wake or drop the streams. */
void mmk__sse_notify(struct mmk__http *h);
/* A heartbeat is due on every stream. */
void mmk__sse_heartbeat(struct mmk__http *h);
/* End every stream: cut it and wake it (before the daemon stops). */
void mmk__sse_resume_all(struct mmk__http *h);
/* Cut every stream as if its connection were lost. */
void mmk__sse_drop_all(struct mmk__http *h);

/* The live page, embedded at build time (http_page.S). */
extern const char mmk__http_page[];
extern const char mmk__http_page_end[];

#endif
