/*
 * web.c - the HTTP push feed under load: `mmkit server --http` with 100
 * Server-Sent Events clients and one socket subscriber.
 *
 *  1. latency from calling mmk_seg_publish to the event read by each of the
 *     100 SSE clients, and by a socket subscriber, in the same rounds (p50, p99),
 *     against a bare SOCK_SEQPACKET round trip between two processes;
 *  2. events per second delivered to 100 SSE clients;
 *  3. server memory per idle SSE connection (VmRSS with 150 more streams).
 */
#include "bench.h"
#include "mmkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define STREAMS 100
#define ROUNDS 300
#define BURST 2000
#define IDLE 150            /* + STREAMS stays under the feed's 256 connections */

static char sock_path[108];
static pid_t server_pid;
static int http_port;

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void start_server(const char *argv0)
{
    char bin[4096], addr[64];
    bench_mmkit_path(argv0, bin, sizeof bin);
    snprintf(sock_path, sizeof sock_path, "/tmp/mmkitd-web-%d.sock", (int)getpid());
    http_port = free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_port);
    server_pid = fork();
    if (server_pid == 0) {
        execl(bin, bin, "server", "--quiet", "--socket", sock_path, "--http", addr, (char *)NULL);
        _exit(127);
    }
    atexit(stop_server);
    bench_wait_server("bench/web", sock_path, bin);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bench/web: connect");
        exit(1);
    }
    return fd;
}

struct stream { int fd; char buf[65536]; size_t have; };

static void stream_read(struct stream *s)
{
    ssize_t n = recv(s->fd, s->buf + s->have, sizeof s->buf - 1 - s->have, MSG_DONTWAIT);
    if (n > 0) {
        s->have += (size_t)n;
        s->buf[s->have] = '\0';
    } else if (n == 0) {
        fprintf(stderr, "bench/web: a stream closed (%s)\n", s->buf);
        exit(1);
    }
    if (s->have > sizeof s->buf - 4096) { /* keep the tail only */
        memmove(s->buf, s->buf + s->have - 2048, 2048);
        s->have = 2048;
        s->buf[s->have] = '\0';
    }
}

static void stream_open(struct stream *s, const char *path)
{
    s->fd = dial();
    s->have = 0;
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: b\r\n\r\n", path);
    if (send(s->fd, req, strlen(req), 0) < 0)
        exit(1);
    while (!strstr(s->buf, "retry: ")) {
        struct pollfd p = { s->fd, POLLIN, 0 };
        poll(&p, 1, 5000);
        stream_read(s);
    }
    s->have = 0;
    s->buf[0] = '\0';
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[(int)((n - 1) * p)];
}

/* The floor: a SOCK_SEQPACKET ping-pong between two processes, per trip. */
static double seqpacket_rtt_us(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    pid_t kid = fork();
    char b[64];
    if (kid == 0) {
        close(sv[0]);
        while (recv(sv[1], b, sizeof b, 0) > 0)
            send(sv[1], b, 16, 0);
        _exit(0);
    }
    close(sv[1]);
    double v[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = bench_now();
        send(sv[0], b, 16, 0);
        recv(sv[0], b, sizeof b, 0);
        v[i] = (bench_now() - t0) * 1e6;
    }
    close(sv[0]);
    waitpid(kid, NULL, 0);
    return bench_median(v, ROUNDS);
}

int main(int argc, char **argv)
{
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    double floor_us = seqpacket_rtt_us();
    start_server(argv[0]);
    mmk_client *pub = mmk_client_connect(sock_path, 5000), *sub = mmk_client_connect(sock_path, 5000);
    if (!pub || !sub || mmk_seg_create(pub, "web", 1 << 20, 0644) < 0 ||
        mmk_seg_subscribe(sub, "web") < 0) {
        fprintf(stderr, "bench/web: setup: %s\n", strerror(errno));
        return 1;
    }
    static struct stream st[STREAMS];
    for (int i = 0; i < STREAMS; i++)
        stream_open(&st[i], "/events?segment=web");

    /* 1. latency, SSE and socket, in the same rounds: every stream's
     * receipt is timed (p50 over all 100 streams and all rounds), and
     * stream 0's on its own (the first connected, which libmicrohttpd
     * happens to write last). */
    static double sse_all[ROUNDS * STREAMS];
    double sse[ROUNDS], sock[ROUNDS];
    int nall = 0;
    uint64_t version;
    int ep = epoll_create1(0);
    for (int i = 0; i <= STREAMS; i++) {
        struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, i < STREAMS ? st[i].fd : mmk_client_fd(sub), &e) != 0)
            return 1;
    }
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now();
        if (mmk_seg_publish(pub, "web", 0, 64, &version) < 0)
            return 1;
        /* The stream's ids are the server's sequence numbers; the write
         * event carries the new version. */
        char pat[40];
        snprintf(pat, sizeof pat, "\"version\":%llu,", (unsigned long long)version);
        int left = STREAMS, got_sock = 0;
        static char done[STREAMS];
        memset(done, 0, sizeof done);
        while (left || !got_sock) {
            mmk_seg_event ev;
            while (!got_sock && mmk_seg_next_event(sub, &ev, 0) == 0)
                if (ev.kind == MMK_EV_WRITE && ev.info.version == version) {
                    sock[r] = (bench_now() - t0) * 1e6;
                    got_sock = 1;
                }
            if (!left && got_sock)
                break;
            struct epoll_event evs[STREAMS + 1];
            /* Events the client library already holds need no wait. */
            int n = epoll_wait(ep, evs, STREAMS + 1, !got_sock && mmk_client_pending(sub) ? 0 : 5000);
            if (n == 0 && !mmk_client_pending(sub)) {
                fprintf(stderr, "bench/web: round %d: no event (%d streams left, socket %d)\n", r,
                        left, got_sock);
                return 1;
            }
            for (int k = 0; k < n; k++) {
                uint32_t i = evs[k].data.u32;
                if (i == STREAMS)
                    continue;
                stream_read(&st[i]);
                const char *at = strstr(st[i].buf, pat);
                if (!done[i] && at && strstr(at, "\n\n")) {
                    double us = (bench_now() - t0) * 1e6;
                    sse_all[nall++] = us;
                    if (i == 0)
                        sse[r] = us;
                    done[i] = 1;
                    left--;
                    st[i].have = 0;
                    st[i].buf[0] = '\0';
                }
            }
        }
    }
    close(ep);
    double sse50 = pct(sse, ROUNDS, 0.5), sse99 = pct(sse, ROUNDS, 0.99);
    double all50 = pct(sse_all, nall, 0.5), all99 = pct(sse_all, nall, 0.99);
    double sock50 = pct(sock, ROUNDS, 0.5), sock99 = pct(sock, ROUNDS, 0.99);

    /* 2. a burst: events per second until all 100 streams have the last. */
    double t0 = bench_now();
    for (int i = 0; i < BURST; i++)
        if (mmk_seg_publish(pub, "web", (uint64_t)i, 1, &version) < 0)
            return 1;
    char last[40];
    snprintf(last, sizeof last, "\"version\":%llu,", (unsigned long long)version);
    for (int i = 0; i < STREAMS; i++) {
        while (!strstr(st[i].buf, last)) {
            struct pollfd p = { st[i].fd, POLLIN, 0 };
            if (poll(&p, 1, 10000) <= 0) {
                fprintf(stderr, "bench/web: stream %d stalled\n", i);
                return 1;
            }
            stream_read(&st[i]);
        }
    }
    double burst_s = bench_now() - t0;

    /* 3. memory per idle stream. */
    long before = rss_kib(server_pid);
    static struct stream idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        stream_open(&idle[i], "/events");
    usleep(200000);
    long after = rss_kib(server_pid);

    bench_header("web", "HTTP push feed: 100 SSE clients + 1 socket subscriber on one mmkitd");
    bench_row("SOCK_SEQPACKET round trip, 2 processes (floor)", floor_us, "us", 0);
    bench_row("publish -> socket subscriber, p50", sock50, "us", floor_us);
    bench_row("publish -> socket subscriber, p99", sock99, "us", floor_us);
    bench_row("publish -> SSE client (all 100 streams), p50", all50, "us", floor_us);
    bench_row("publish -> SSE client (all 100 streams), p99", all99, "us", floor_us);
    bench_row("publish -> SSE stream 0 (written last), p50", sse50, "us", floor_us);
    bench_row("publish -> SSE stream 0 (written last), p99", sse99, "us", floor_us);
    printf("\nSSE / socket latency, all streams: p50 %.2fx, p99 %.2fx (goal <= 2x)\n", all50 / sock50,
           all99 / sock99);
    printf("SSE / socket latency, stream 0: p50 %.2fx, p99 %.2fx\n", sse50 / sock50, sse99 / sock99);
    printf("events delivered to %d SSE clients: %.0f events/s (%.0f deliveries/s)\n", STREAMS,
           BURST / burst_s, BURST * (double)STREAMS / burst_s);
    printf("server memory per idle SSE connection: %.1f KiB (VmRSS %ld -> %ld KiB with %d more)\n",
           (double)(after - before) / IDLE, before, after, IDLE);

    for (int i = 0; i < IDLE; i++)
        close(idle[i].fd);
    for (int i = 0; i < STREAMS; i++)
        close(st[i].fd);
    mmk_client_close(pub);
    mmk_client_close(sub);
    stop_server();
    return 0;
}
