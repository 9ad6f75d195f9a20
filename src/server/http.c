/*
 * http.c - the HTTP feed's listening socket, connections and loop glue.
 *
 * HTTP itself is GNU libmicrohttpd's: request parsing, header limits,
 * chunked streaming, timeouts.  It runs with no thread of its own
 * (external polling, MHD_USE_EPOLL) and no listening socket of its own
 * (MHD_USE_NO_LISTEN_SOCKET): this file accepts connections, so that one
 * past the limit gets a 503 instead of a silent close, and hands the rest
 * over with MHD_add_connection.  The server's loop waits on one descriptor,
 * an epoll set holding the listening socket and libmicrohttpd's own epoll
 * descriptor.
 */
#include "http_int.h"
#include "http_json.h"
#include "sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static const char *const kind_names[MMK__HTTP_KINDS] = {
    "create", "write", "remove", "attach", "detach",
};

const char *mmk__http_kind_name(enum mmk__http_kind kind)
{
    return (unsigned)kind < MMK__HTTP_KINDS ? kind_names[kind] : NULL;
}

/* ---- the listening address ------------------------------------------------ */

/* "A.B.C.D:PORT", "[v6]:PORT" or "localhost:PORT". */
static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof host)
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host || strchr(s, ':') != colon)
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || port > 65535 || errno)
        return -EINVAL;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");

    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
    } else {
        return -EINVAL;
    }
    return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
}

static void make_url(struct mmk__http *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (mmk__sys_getsockname(h->listen_fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
            port = ntohs(in4->sin_port);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(h->url, sizeof h->url, ss.ss_family == AF_INET6 ? "http://[%s]:%u/" : "http://%s:%u/",
             host, port);
}

static int listen_on(struct mmk__http *h)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int r = parse_addr(h->cfg.addr, &ss, &len);
    if (r < 0)
        return r;
    if (!is_loopback(&ss) && !(h->cfg.flags & MMK__HTTP_ANY))
        return -EACCES;
    int fd = mmk__sys_socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fd;
    int one = 1;
    mmk__sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((r = mmk__sys_bind(fd, (struct sockaddr *)&ss, len)) < 0 ||
        (r = mmk__sys_listen(fd, 128)) < 0) {
        mmk__sys_close(fd);
        return r;
    }
    h->listen_fd = fd;
    make_url(h);
    return 0;
}

/* ---- connections ------------------------------------------------------------ */

static void notify_conn(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                        enum MHD_ConnectionNotificationCode code)
{
    struct mmk__http *h = cls;
    (void)conn;
    (void)socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        h->conns++;
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED && h->conns > 0)
        h->conns--;
}

/* Over the limit: read what the client already sent (so that closing does
 * not reset the connection before it reads the answer), answer 503, close. */
static void refuse(struct mmk__http *h, int fd)
{
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 36\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
        "{\"error\":\"too many connections\"}\r\n\r\n";
    char sink[2048];
    mmk__sys_recv_now(fd, sink, sizeof sink);
    mmk__sys_send_now(fd, busy, sizeof busy - 1);
    mmk__sys_shutdown(fd, SHUT_WR);
    mmk__sys_close(fd);
    h->refused++;
}

static void accept_all(struct mmk__http *h)
{
    /* A bounded batch per turn, so a connection storm cannot starve the
     * rest of the loop. */
    for (int i = 0; i < 64; i++) {
        int fd = mmk__sys_accept(h->listen_fd);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE and friends: try again next turn */
        if (h->conns >= h->cfg.max_conns) {
            refuse(h, fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (mmk__sys_getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
            mmk__sys_close(fd);
            continue;
        }
        /* Closes fd itself on failure. */
        MHD_add_connection(h->daemon, fd, (struct sockaddr *)&ss, len);
    }
}

/* ---- the public calls ------------------------------------------------------- */

struct mmk__http *mmk__http_open(const struct mmk__http_config *cfg,
                                 const struct mmk__http_source *src)
{
    if (!cfg || !cfg->addr || (cfg->flags & ~(unsigned)(MMK__HTTP_ANY | MMK__HTTP_ALL))) {
        errno = EINVAL;
        return NULL;
    }
    struct mmk__http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->cfg = *cfg;
    if (!h->cfg.max_conns)
        h->cfg.max_conns = 256;
    if (!h->cfg.timeout_s)
        h->cfg.timeout_s = 10;
    if (!h->cfg.heartbeat_ms)
        h->cfg.heartbeat_ms = 15000;
    if (!h->cfg.backlog)
        h->cfg.backlog = 1024;
    if (src)
        h->src = *src;
    h->listen_fd = h->epfd = -1;

    int r = -ENOMEM;
    if (!(h->feed = mmk__feed_new(h->cfg.backlog)))
        goto fail;
    if ((r = listen_on(h)) < 0)
        goto fail;
    h->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0,
        NULL, NULL, mmk__http_request, h,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MMK__HTTP_POOL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->cfg.timeout_s,
        /* One above ours, so that our 503 is what a client sees. */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->cfg.max_conns + 1,
        MHD_OPTION_NOTIFY_CONNECTION, notify_conn, h,
        /* Requests must be well-formed HTTP/1.1 (a Host header, no stray
         * whitespace): what is not gets 400. */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_END);
    r = -ENOMEM;
    if (!h->daemon)
        goto fail;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di)
        goto fail;
    if ((r = h->epfd = mmk__sys_epoll_create()) < 0)
        goto fail;
    struct epoll_event ev = { .events = EPOLLIN };
    ev.data.fd = h->listen_fd;
    if ((r = mmk__sys_epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->listen_fd, &ev)) < 0)
        goto fail;
    ev.data.fd = di->epoll_fd;
    if ((r = mmk__sys_epoll_ctl(h->epfd, EPOLL_CTL_ADD, di->epoll_fd, &ev)) < 0)
        goto fail;
    h->next_beat_ms = mmk__sys_monotonic_ms() + h->cfg.heartbeat_ms;
    return h;

fail:
    mmk__http_close(h);
    errno = -r;
    return NULL;
}

void mmk__http_close(struct mmk__http *h)
{
    if (!h)
        return;
    if (h->daemon) {
        /* Stopping with suspended connections leaks them: wake all first. */
        mmk__sse_resume_all(h);
        MHD_run(h->daemon);
        MHD_stop_daemon(h->daemon);
    }
    if (h->epfd >= 0)
        mmk__sys_close(h->epfd);
    if (h->listen_fd >= 0)
        mmk__sys_close(h->listen_fd);
    mmk__feed_free(h->feed);
    free(h);
}

int mmk__http_fd(const struct mmk__http *h)
{
    return h->epfd;
}

int mmk__http_timeout(struct mmk__http *h)
{
    uint64_t now = mmk__sys_monotonic_ms();
    uint64_t t = h->next_beat_ms > now ? h->next_beat_ms - now : 0;
    MHD_UNSIGNED_LONG_LONG mt;
    if (MHD_get_timeout(h->daemon, &mt) == MHD_YES && mt < t)
        t = mt;
    return t > INT_MAX ? INT_MAX : (int)t;
}

void mmk__http_run(struct mmk__http *h)
{
    struct epoll_event evs[4];
    /* Only to clear readiness; both sources are polled below anyway. */
    mmk__sys_epoll_wait(h->epfd, evs, 4, 0);
    accept_all(h);
    uint64_t now = mmk__sys_monotonic_ms();
    if (now >= h->next_beat_ms) {
        mmk__sse_heartbeat(h);
        h->next_beat_ms = now + h->cfg.heartbeat_ms;
    }
    MHD_run(h->daemon);
}

uint64_t mmk__http_publish(struct mmk__http *h, const struct mmk__http_event *ev)
{
    if ((unsigned)ev->kind >= MMK__HTTP_KINDS || !ev->seg.name)
        return 0;
    uint64_t seq = ev->seq ? ev->seq : h->own_seq + 1;
    if (seq <= mmk__feed_last_seq(h->feed))
        return 0; /* out of order: cannot be resumed from, so not sent */
    h->own_seq = seq;
    if (!mmk__http_visible(h, &ev->seg))
        return 0;

    struct mmk__http_event e = *ev;
    if (e.kind == MMK__HTTP_WRITE && e.length == 0) {
        e.offset = 0;   /* no range given: the whole segment */
        e.length = e.seg.size;
    }
    struct mmk__jbuf b;
    char head[64];
    int n = snprintf(head, sizeof head, "id: %llu\nevent: %s\ndata: ",
                     (unsigned long long)seq, kind_names[e.kind]);
    mmk__jbuf_init(&b, MMK__HTTP_EVENT_MAX);
    mmk__jbuf_raw(&b, head, (size_t)n);
    mmk__jbuf_seg(&b, &e.seg, &e);
    mmk__jbuf_raw(&b, "\n\n", 2);
    int r = b.err ? b.err : mmk__feed_push(h->feed, seq, e.seg.name, b.p, b.len);
    mmk__jbuf_free(&b);
    if (r < 0)
        return 0;
    mmk__sse_notify(h);
    return seq;
}

void mmk__http_drop_streams(struct mmk__http *h)
{
    mmk__sse_drop_all(h);
}

const char *mmk__http_url(const struct mmk__http *h)
{
    return h->url;
}

void mmk__http_stats(const struct mmk__http *h, struct mmk__http_stats *out)
{
    out->conns = h->conns;
    out->streams = h->nstreams;
    out->refused = h->refused;
    out->dropped = h->dropped;
    out->seq = mmk__feed_last_seq(h->feed);
}
