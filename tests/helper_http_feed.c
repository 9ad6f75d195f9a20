/*
 * helper_http_feed.c - the HTTP feed on its own, for tests and benchmarks:
 * an epoll loop like mmkitd's serving the feed, with segments and events
 * made up from commands on stdin instead of a segment server.
 *
 *   helper_http_feed [--addr A:P] [--all] [--any] [--max-conns N]
 *                    [--timeout S] [--heartbeat-ms N] [--backlog N]
 *
 * Prints "url http://127.0.0.1:PORT/" once listening, then one line per
 * command: "ok SEQ" (0 when the event is not shown over HTTP) or "error ...".
 *
 *   create NAME SIZE MODE     (mode in octal)
 *   write NAME OFFSET LENGTH
 *   remove NAME
 *   attach NAME | detach NAME
 *   stats                     -> "stats CONNS STREAMS REFUSED DROPPED SEQ"
 *   kick                      close every event stream (clients reconnect) -> "ok 0"
 *   quit
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct seg {
    char name[256];
    uint64_t size, version;
    uint32_t mode, holders;
    int used;
};

static struct seg segs[256];

static struct seg *find(const char *name)
{
    for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++)
        if (segs[i].used && strcmp(segs[i].name, name) == 0)
            return &segs[i];
    return NULL;
}

static void to_http(const struct seg *s, struct mmk__http_seg *out)
{
    memset(out, 0, sizeof *out);
    out->name = s->name;
    out->size = s->size;
    out->mode = s->mode;
    out->uid = (uint32_t)getuid();
    out->gid = (uint32_t)getgid();
    out->version = s->version;
    out->holders = s->holders;
}

static int src_each(void *ctx, int (*emit)(void *, const struct mmk__http_seg *), void *arg)
{
    (void)ctx;
    for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
        if (!segs[i].used)
            continue;
        struct mmk__http_seg hs;
        to_http(&segs[i], &hs);
        int r = emit(arg, &hs);
        if (r)
            return r;
    }
    return 0;
}

static int src_find(void *ctx, const char *name, struct mmk__http_seg *out)
{
    (void)ctx;
    struct seg *s = find(name);
    if (!s)
        return -ENOENT;
    to_http(s, out);
    return 0;
}

static void command(struct mmk__http *h, char *line)
{
    char op[16], name[256];
    unsigned long long a = 0, b = 0;
    unsigned mode = 0;
    struct mmk__http_event ev;
    memset(&ev, 0, sizeof ev);
    int n = sscanf(line, "%15s %255s %llu %llu", op, name, &a, &b);
    if (n >= 1 && strcmp(op, "quit") == 0)
        exit(0);
    if (n >= 1 && strcmp(op, "stats") == 0) {
        struct mmk__http_stats st;
        mmk__http_stats(h, &st);
        printf("stats %u %u %llu %llu %llu\n", st.conns, st.streams,
               (unsigned long long)st.refused, (unsigned long long)st.dropped,
               (unsigned long long)st.seq);
        return;
    }
    if (n >= 1 && strcmp(op, "kick") == 0) {
        mmk__http_drop_streams(h);
        printf("ok 0\n");
        return;
    }
    if (n < 2) {
        printf("error usage\n");
        return;
    }
    struct seg *s = find(name);
    if (strcmp(op, "create") == 0) {
        if (s || sscanf(line, "%*s %*s %llu %o", &a, &mode) != 2) {
            printf("error exists or usage\n");
            return;
        }
        for (size_t i = 0; i < sizeof segs / sizeof segs[0] && !s; i++)
            if (!segs[i].used)
                s = &segs[i];
        if (!s) {
            printf("error full\n");
            return;
        }
        memset(s, 0, sizeof *s);
        s->used = 1;
        snprintf(s->name, sizeof s->name, "%s", name);
        s->size = a;
        s->mode = mode;
        ev.kind = MMK__HTTP_CREATE;
    } else if (!s) {
        printf("error no such segment\n");
        return;
    } else if (strcmp(op, "write") == 0 && n == 4) {
        s->version++;
        ev.kind = MMK__HTTP_WRITE;
        ev.offset = a;
        ev.length = b;
    } else if (strcmp(op, "remove") == 0) {
        ev.kind = MMK__HTTP_REMOVE;
        s->used = 0;
    } else if (strcmp(op, "attach") == 0) {
        s->holders++;
        ev.kind = MMK__HTTP_ATTACH;
    } else if (strcmp(op, "detach") == 0) {
        if (s->holders)
            s->holders--;
        ev.kind = MMK__HTTP_DETACH;
    } else {
        printf("error usage\n");
        return;
    }
    to_http(s, &ev.seg);
    printf("ok %llu\n", (unsigned long long)mmk__http_publish(h, &ev));
}

int main(int argc, char **argv)
{
    struct mmk__http_config cfg = { .addr = "127.0.0.1:0" };
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--all") == 0)
            cfg.flags |= MMK__HTTP_ALL;
        else if (strcmp(argv[i], "--any") == 0)
            cfg.flags |= MMK__HTTP_ANY;
        else if (v && strcmp(argv[i], "--addr") == 0)
            cfg.addr = argv[++i];
        else if (v && strcmp(argv[i], "--max-conns") == 0)
            cfg.max_conns = (unsigned)atoi(argv[++i]);
        else if (v && strcmp(argv[i], "--timeout") == 0)
            cfg.timeout_s = (unsigned)atoi(argv[++i]);
        else if (v && strcmp(argv[i], "--heartbeat-ms") == 0)
            cfg.heartbeat_ms = (unsigned)atoi(argv[++i]);
        else if (v && strcmp(argv[i], "--backlog") == 0)
            cfg.backlog = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "helper_http_feed: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct mmk__http_source src = { NULL, src_each, src_find };
    struct mmk__http *h = mmk__http_open(&cfg, &src);
    if (!h) {
        fprintf(stderr, "helper_http_feed: %s: %s\n", cfg.addr, strerror(errno));
        return 1;
    }
    printf("url %s\n", mmk__http_url(h));

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN };
    ev.data.fd = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    ev.data.fd = mmk__http_fd(h);
    epoll_ctl(ep, EPOLL_CTL_ADD, mmk__http_fd(h), &ev);

    char buf[4096];
    size_t have = 0;
    for (;;) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, mmk__http_timeout(h));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd != 0)
                continue;
            ssize_t r = read(0, buf + have, sizeof buf - 1 - have);
            if (r <= 0) {
                mmk__http_close(h);
                return 0;
            }
            have += (size_t)r;
            char *nl;
            while ((nl = memchr(buf, '\n', have))) {
                *nl = '\0';
                command(h, buf);
                size_t used = (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, have - used);
                have -= used;
            }
            if (have == sizeof buf - 1)
                have = 0; /* a line too long: dropped */
        }
        mmk__http_run(h);
    }
}
