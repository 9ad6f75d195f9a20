/*
 * http.h - mmkitd's HTTP push feed (issue 12, server side): Server-Sent
 * Events of the server's event stream and JSON views of the segments,
 * served from the server's one epoll loop.  See docs/server.md.
 */
#ifndef MMK_SERVER_HTTP_H
#define MMK_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define MMK__HTTP_HEAD_MAX 8192

enum { MMK__HTTP_OTHER = 0, MMK__HTTP_GET = 1 };

struct mmk__http_req {
    int      method;             /* MMK__HTTP_GET or MMK__HTTP_OTHER */
    char     path[256];          /* without the query */
    char     segment[256];       /* ?segment=NAME */
    int      has_segment;
    uint64_t last_event_id;      /* Last-Event-ID */
    int      has_last_event_id;
    size_t   head_len;           /* bytes of the head, blank line included */
};

/*
 * Parse the request head at the start of buf.  0 with r->head_len > 0: a
 * whole head; 0 with head_len 0: incomplete, read more; -EMSGSIZE: no end
 * of head within MMK__HTTP_HEAD_MAX bytes; -EBADMSG: malformed.
 */
int mmk__http_parse(const char *buf, size_t len, struct mmk__http_req *r);

struct mmk__srv;
/* Listen on addr ("127.0.0.1:8077", "[::1]:8077"); loopback only unless
 * any is set.  0 or -errno (a line on stderr says why). */
int  mmk__http_start(struct mmk__srv *srv, const char *addr, int any);
void mmk__http_stop(struct mmk__srv *srv);
/* Deferred closes of HTTP connections, after each batch. */
void mmk__http_after_batch(struct mmk__srv *srv);

#endif
