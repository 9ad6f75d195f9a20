/*
 * bench/web.c - mmkitd's HTTP feed: events per second delivered to 100 SSE
 * clients; latency from publish to an SSE client vs to a socket subscriber
 * (the same event, the same run: the ratio is what counts); server memory
 * per idle /events connection.
 */
#include "bench.h"
#include "mmkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SSE 100
#define BURST 1000
#define LAT_EVENTS 300
#define IDLE 1000
#define SLOTS 1024

static char sock_path[108];
static pid_t server_pid;
static int port;

static void start_server(const char *argv0)
{
    char bin[4096], dir[4096], addr[32];
    snprintf(dir, sizeof dir, "%s", argv0);
    snprintf(bin, sizeof bin, "%s/../mmkit", dirname(dir));
    snprintf(sock_path, sizeof sock_path, "/tmp/mmkitd-bench-web-%d.sock", (int)getpid());
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(s);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    server_pid = fork();
    if (server_pid == 0) {
        execl(bin, bin, "server", "--quiet", "--socket", sock_path, "--http", addr, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        mmk_client *c = mmk_client_connect(sock_path, 1000);
        if (c) {
            mmk_client_close(c);
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "bench/web: the server did not start\n");
    exit(1);
}

static int sse_open(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    const char *req = "GET /events?segment=web HTTP/1.1\r\nHost: bench\r\n\r\n";
    if (write(s, req, strlen(req)) != (ssize_t)strlen(req))
        return -1;
    return s;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Count "event: write" blocks; for latency, read "version":N and look up
 * its publish time.  Runs in a child; writes results to the pipe. */
static void readers_child(int nconn, int want_events, int out, const volatile double *slots)
{
    int ep = epoll_create1(0);
    static int fds[SSE];
    static int got[SSE];
    static double lat[SSE * LAT_EVENTS];
    int nlat = 0;
    for (int i = 0; i < nconn; i++) {
        fds[i] = sse_open();
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    usleep(200000); /* let the server register the streams */
    char ready = 1;
    if (write(out, &ready, 1) != 1)
        _exit(1);
    int done = 0;
    double t0 = 0;
    static char buf[1 << 16];
    while (done < nconn) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 10000);
        if (n <= 0)
            break;
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            ssize_t r = read(fds[i], buf, sizeof buf - 1);
            if (r <= 0)
                continue;
            double now = bench_now();
            buf[r] = '\0';
            for (char *p = buf; (p = strstr(p, "event: write")); p += 12) {
                if (!t0)
                    t0 = now;
                char *v = strstr(p, "\"version\":");
                if (slots && v && nlat < SSE * LAT_EVENTS)
                    lat[nlat++] = (now - slots[strtoull(v + 10, NULL, 10) % SLOTS]) * 1e6;
                if (++got[i] == want_events)
                    done++;
            }
        }
    }
    double dt = bench_now() - t0;
    if (write(out, &dt, sizeof dt) != (ssize_t)sizeof dt || write(out, &nlat, sizeof nlat) != (ssize_t)sizeof nlat)
        _exit(1);
    for (size_t off = 0; off < (size_t)nlat * sizeof(double);) {
        ssize_t w = write(out, (char *)lat + off, (size_t)nlat * sizeof(double) - off);
        if (w <= 0)
            _exit(1);
        off += (size_t)w;
    }
    _exit(0);
}

static void sock_child(int out, const volatile double *slots)
{
    mmk_client *c = mmk_client_connect(sock_path, 5000);
    mmk_seg_subscribe(c, "web");
    char ready = 1;
    if (write(out, &ready, 1) != 1)
        _exit(1);
    static double lat[LAT_EVENTS];
    int nlat = 0;
    while (nlat < LAT_EVENTS) {
        mmk_seg_event ev;
        if (mmk_seg_next_event(c, &ev, 10000) != 0)
            break;
        if (ev.kind == MMK_EV_WRITE)
            lat[nlat++] = (bench_now() - slots[ev.info.version % SLOTS]) * 1e6;
    }
    double dt = 0;
    if (write(out, &dt, sizeof dt) != (ssize_t)sizeof dt || write(out, &nlat, sizeof nlat) != (ssize_t)sizeof nlat ||
        write(out, lat, (size_t)nlat * sizeof(double)) != (ssize_t)((size_t)nlat * sizeof(double)))
        _exit(1);
    _exit(0);
}

/* Fork a reader (kind 0: SSE x nconn, 1: socket subscriber), publish
 * nevents (paced when measuring latency), collect its results. */
static int run(int kind, int nconn, int nevents, int pace_us, mmk_client *pub, volatile double *slots,
               double *dt, double *lat)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        close(p[0]);
        if (kind == 0)
            readers_child(nconn, nevents, p[1], pace_us ? slots : NULL);
        sock_child(p[1], slots);
    }
    close(p[1]);
    char ready;
    if (read(p[0], &ready, 1) != 1)
        exit(1);
    mmk_seg_info in;
    mmk_seg_stat(pub, "web", &in);
    uint64_t v = in.version;
    for (int i = 0; i < nevents; i++) {
        slots[(v + 1) % SLOTS] = bench_now();
        mmk_seg_publish(pub, "web", 0, 8, &v);
        if (pace_us)
            usleep((useconds_t)pace_us);
    }
    int nlat = 0;
    if (read(p[0], dt, sizeof *dt) != (ssize_t)sizeof *dt || read(p[0], &nlat, sizeof nlat) != (ssize_t)sizeof nlat)
        nlat = 0;
    size_t got = 0, want = (size_t)nlat * sizeof(double);
    for (ssize_t r; lat && got < want && (r = read(p[0], (char *)lat + got, want - got)) > 0;)
        got += (size_t)r;
    waitpid(kid, NULL, 0);
    close(p[0]);
    return (int)(got / sizeof(double));
}

int main(int argc, char **argv)
{
    (void)argc;
    start_server(argv[0]);
    mmk_client *pub = mmk_client_connect(sock_path, 5000);
    mmk_seg_create(pub, "web", SLOTS * sizeof(double), 0644);
    int fd = mmk_seg_open(pub, "web", MMK_SEG_RDWR, NULL);
    volatile double *slots = mmap(NULL, SLOTS * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

    double dt, rates[3];
    for (int r = 0; r < 3; r++) {
        run(0, SSE, BURST, 0, pub, slots, &dt, NULL);
        rates[r] = dt > 0 ? SSE * (double)BURST / dt : 0;
    }
    static double sse_lat[LAT_EVENTS], sock_lat[LAT_EVENTS];
    int ns = run(0, 1, LAT_EVENTS, 2000, pub, slots, &dt, sse_lat);
    int nk = run(1, 1, LAT_EVENTS, 2000, pub, slots, &dt, sock_lat);
    qsort(sse_lat, (size_t)ns, sizeof(double), cmp_d);
    qsort(sock_lat, (size_t)nk, sizeof(double), cmp_d);

    long before = rss_kib(server_pid);
    static int idle[IDLE];
    int opened = 0;
    for (; opened < IDLE; opened++)
        if ((idle[opened] = sse_open()) < 0)
            break;
    usleep(300000);
    long after = rss_kib(server_pid);
    for (int i = 0; i < opened; i++)
        close(idle[i]);

    bench_header("web/events", "mmkitd's HTTP feed: Server-Sent Events");
    bench_row("events delivered per second to 100 SSE clients", bench_median(rates, 3), "events/s", 0);
    if (ns && nk) {
        bench_row("publish to socket subscriber, p50 (anchor)", sock_lat[nk / 2], "us", 0);
        bench_row("publish to SSE client, p50 (goal <= 2x)", sse_lat[ns / 2], "us", sock_lat[nk / 2]);
        bench_row("publish to socket subscriber, p99 (anchor)", sock_lat[nk * 99 / 100], "us", 0);
        bench_row("publish to SSE client, p99 (goal <= 2x)", sse_lat[ns * 99 / 100], "us", sock_lat[nk * 99 / 100]);
    }
    if (before > 0 && after > 0 && opened > 0)
        bench_row("server memory per idle /events connection", (double)(after - before) * 1024 / opened, "bytes", 0);

    munmap((void *)slots, SLOTS * sizeof(double));
    close(fd);
    mmk_client_close(pub);
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    return 0;
}
