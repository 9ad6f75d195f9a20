/*
 * bench/server.c - mmkitd under load, each number next to its floor:
 *
 *  1. 1,000 clients connected at once, each opening (one outstanding
 *     request per client) and mapping a segment: opens per second, errors.
 *  2. Event latency, publish to receipt, to 100 subscribers (p50, p99), vs
 *     the floor: one SOCK_SEQPACKET datagram from one process to another,
 *     and vs the kernel's floor of the same delivery without mmkit;
 *     through the segment's event ring (the default) and, for comparison,
 *     as one event message per subscriber.
 *  3. The same with 500 idle connections held open (p99 ratio to 2).
 *  4. Opening and mapping a segment through mmkitd vs shm_open + mmap, next
 *     to a bare round trip, with the processes placed by the scheduler, on
 *     one CPU, and on two.
 *
 * The server is build/mmkit server on a private socket.
 */
#include "bench.h"
#include "mmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLIENTS 1000
#define SUBSCRIBERS 100
#define IDLE 500
#define EVENTS 300
#define SLOTS 1024

static char sock_path[108];
static pid_t server_pid;

static void start_server(const char *argv0)
{
    char bin[4096];
    bench_mmkit_path(argv0, bin, sizeof bin);
    snprintf(sock_path, sizeof sock_path, "/tmp/mmkitd-bench-%d.sock", (int)getpid());
    server_pid = fork();
    if (server_pid == 0) {
        execl(bin, bin, "server", "--quiet", "--socket", sock_path, (char *)NULL);
        _exit(127);
    }
    bench_wait_server("bench/server", sock_path, bin);
}

static void stop_server(void)
{
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
}

static mmk_client *must_connect(void)
{
    mmk_client *c = mmk_client_connect(sock_path, 10000);
    if (!c) {
        fprintf(stderr, "bench/server: connect: %s\n", strerror(errno));
        exit(1);
    }
    return c;
}

/* ---- 1. many clients opening at once ------------------------------------------ */

static double many_opens(mmk_client **cl, int *errors)
{
    double t0 = bench_now();
    for (int i = 0; i < CLIENTS; i++) {
        mmk_request q = { .op = MMK_OP_OPEN, .name = "many", .flags = MMK_SEG_RDONLY };
        if (mmk_client_submit(cl[i], &q) <= 0)
            ++*errors;
    }
    for (int i = 0; i < CLIENTS; i++) {
        mmk_message m;
        if (mmk_client_recv(cl[i], &m, 10000) != 0 || m.status != 0 || m.fd < 0) {
            ++*errors;
            continue;
        }
        void *p = mmap(NULL, 65536, PROT_READ, MAP_SHARED, m.fd, 0);
        if (p == MAP_FAILED || ((volatile char *)p)[4096] != 0)
            ++*errors;
        else
            munmap(p, 65536);
        close(m.fd);
    }
    double dt = bench_now() - t0;
    for (int i = 0; i < CLIENTS; i++)
        mmk_seg_release(cl[i], "many");
    return CLIENTS / dt;
}

/* ---- 2, 3. event latency ------------------------------------------------------ */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1));
    return v[i];
}

/* In a child: write the n latencies to the pipe out and exit. */
static void __attribute__((noreturn)) send_latencies(int out, const double *lat, int n)
{
    size_t bytes = (size_t)n * sizeof(double);
    for (size_t off = 0; off < bytes;) {
        ssize_t w = write(out, (const char *)lat + off, bytes - off);
        if (w <= 0)
            _exit(1);
        off += (size_t)w;
    }
    _exit(0);
}

/* In a child: 100 subscribers on one epoll loop, reading the segment's
 * event ring (ring) or event messages; write each latency (µs) to the
 * pipe.  The publish time of version v is in slot v % SLOTS. */
static void subscribers_child(int out, int ring)
{
    setenv("MMKIT_EVENT_RING", ring ? "1" : "0", 1);
    mmk_client *c[SUBSCRIBERS];
    int ep = epoll_create1(0);
    mmk_client *m = must_connect();
    int fd = mmk_seg_open(m, "lat", MMK_SEG_RDONLY, NULL);
    const volatile double *slots = mmap(NULL, SLOTS * sizeof(double), PROT_READ, MAP_SHARED, fd, 0);
    for (int i = 0; i < SUBSCRIBERS; i++) {
        c[i] = must_connect();
        mmk_seg_subscribe(c[i], "lat");
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, mmk_client_fd(c[i]), &ev);
    }
    char ready = 1;
    if (write(out, &ready, 1) != 1)
        _exit(1);
    /* Kept here and written at the end: a full pipe must not slow receipt. */
    static double lat[SUBSCRIBERS * EVENTS];
    int got = 0;
    while (got < SUBSCRIBERS * EVENTS) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 5000);
        if (n <= 0)
            break;
        for (int k = 0; k < n; k++) {
            mmk_seg_event e;
            while (got < SUBSCRIBERS * EVENTS && mmk_seg_next_event(c[evs[k].data.u32], &e, 0) == 0)
                lat[got++] = (bench_now() - slots[e.info.version % SLOTS]) * 1e6;
        }
    }
    send_latencies(out, lat, got);
}

static void event_latency(double *p50, double *p99, int ring)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    mmk_client *pub = must_connect();
    mmk_seg_create(pub, "lat", SLOTS * sizeof(double), 0644);
    int fd = mmk_seg_open(pub, "lat", MMK_SEG_RDWR, NULL);
    volatile double *slots = mmap(NULL, SLOTS * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        close(p[0]);
        subscribers_child(p[1], ring);
    }
    close(p[1]);
    char ready;
    if (read(p[0], &ready, 1) != 1)
        exit(1);
    mmk_seg_info in;
    mmk_seg_stat(pub, "lat", &in);
    uint64_t v = in.version;
    static double lat[SUBSCRIBERS * EVENTS];
    for (int i = 0; i < EVENTS; i++) {
        slots[(v + 1) % SLOTS] = bench_now();
        mmk_seg_publish(pub, "lat", 0, 8, &v);
        usleep(2000);
    }
    size_t got = 0, want = sizeof lat;
    for (ssize_t r; got < want && (r = read(p[0], (char *)lat + got, want - got)) > 0;)
        got += (size_t)r;
    int n = (int)(got / sizeof(double));
    waitpid(kid, NULL, 0);
    close(p[0]);
    *p50 = pct(lat, n, 0.50);
    *p99 = pct(lat, n, 0.99);
    if (n != SUBSCRIBERS * EVENTS)
        printf("(only %d of %d events arrived)\n", n, SUBSCRIBERS * EVENTS);
    munmap((void *)slots, SLOTS * sizeof(double));
    close(fd);
    mmk_seg_remove(pub, "lat");
    mmk_client_close(pub);
}

/*
 * The kernel's own floor for this delivery, without mmkit: what any server
 * pays to hand one event to 100 watchers.  Two hops, as through mmkitd: a
 * publisher sends a datagram to a relay process, which rings a bell (a
 * stream socket, emptied then written) watched edge-triggered by 100 epoll
 * sets nested in one epoll loop of a third process, as mmkit's clients are;
 * each watcher's receipt is one load from shared memory.
 */
static void kernel_floor(double *p50, double *p99)
{
    struct shared {
        volatile double t;
        volatile uint64_t seq;
    } *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int hop[2], bell[2], p[2];
    if (sh == MAP_FAILED || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, hop) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, bell) != 0 || pipe(p) != 0)
        exit(1);
    fflush(NULL);
    pid_t relay = fork();
    if (relay == 0) {
        close(hop[0]);
        close(p[0]);
        close(p[1]);
        char b[64];
        for (ssize_t n; (n = recv(hop[1], b, sizeof b, 0)) > 0;) {
            while (recv(bell[0], b, sizeof b, MSG_DONTWAIT) > 0)
                ;
            if (send(bell[1], b, 1, MSG_NOSIGNAL) != 1)
                _exit(1);
        }
        _exit(0);
    }
    close(hop[1]);
    pid_t kid = fork();
    if (kid == 0) {
        close(hop[0]);
        close(p[0]);
        int ep = epoll_create1(0), in[SUBSCRIBERS];
        uint64_t seen[SUBSCRIBERS] = { 0 };
        for (int i = 0; i < SUBSCRIBERS; i++) {
            int d = dup(bell[0]);
            in[i] = epoll_create1(0);
            struct epoll_event e = { .events = EPOLLIN | EPOLLET };
            struct epoll_event o = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
            if (in[i] < 0 || d < 0 || epoll_ctl(in[i], EPOLL_CTL_ADD, d, &e) ||
                epoll_ctl(ep, EPOLL_CTL_ADD, in[i], &o))
                _exit(1);
        }
        char ready = 1;
        if (write(p[1], &ready, 1) != 1)
            _exit(1);
        static double lat[SUBSCRIBERS * EVENTS];
        int got = 0;
        while (got < SUBSCRIBERS * EVENTS) {
            struct epoll_event evs[64];
            int n = epoll_wait(ep, evs, 64, 5000);
            if (n <= 0)
                break;
            for (int k = 0; k < n && got < SUBSCRIBERS * EVENTS; k++) {
                uint32_t i = evs[k].data.u32;
                uint64_t sq = sh->seq;
                if (sq != seen[i]) {
                    seen[i] = sq;
                    lat[got++] = (bench_now() - sh->t) * 1e6;
                } else {
                    /* Nothing new: reset the edge, as mmkit's lazy reset
                     * does, after the batch that took the event. */
                    struct epoll_event x;
                    epoll_wait(in[i], &x, 1, 0);
                }
            }
        }
        send_latencies(p[1], lat, got);
    }
    close(p[1]);
    char ready;
    if (read(p[0], &ready, 1) != 1)
        exit(1);
    for (int i = 0; i < EVENTS; i++) {
        sh->t = bench_now();
        sh->seq = (uint64_t)i + 1;
        if (send(hop[0], "e", 1, 0) != 1)
            exit(1);
        usleep(2000);
    }
    static double lat[SUBSCRIBERS * EVENTS];
    size_t got = 0, want = sizeof lat;
    for (ssize_t r; got < want && (r = read(p[0], (char *)lat + got, want - got)) > 0;)
        got += (size_t)r;
    close(hop[0]); /* the relay's end of the hop: it exits */
    waitpid(kid, NULL, 0);
    waitpid(relay, NULL, 0);
    int n = (int)(got / sizeof(double));
    *p50 = n ? pct(lat, n, 0.50) : 0;
    *p99 = n ? pct(lat, n, 0.99) : 0;
    close(bell[0]);
    close(bell[1]);
    close(p[0]);
    munmap(sh, 4096);
}

/* The floor: one datagram, one process to another, send time inside. */
static void bare_latency(double *p50, double *p99)
{
    int sv[2], p[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0 || pipe(p) != 0)
        exit(1);
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        close(sv[0]);
        for (int i = 0; i < EVENTS * 10; i++) {
            double t;
            if (recv(sv[1], &t, sizeof t, 0) != (ssize_t)sizeof t)
                _exit(1);
            double us = (bench_now() - t) * 1e6;
            if (write(p[1], &us, sizeof us) != (ssize_t)sizeof us)
                _exit(1);
        }
        _exit(0);
    }
    close(sv[1]);
    close(p[1]);
    static double lat[EVENTS * 10];
    int n = 0;
    for (int i = 0; i < EVENTS * 10; i++) {
        double t = bench_now();
        if (send(sv[0], &t, sizeof t, 0) != (ssize_t)sizeof t)
            break;
        if (read(p[0], &lat[n], sizeof lat[n]) == (ssize_t)sizeof lat[n])
            n++;
        usleep(200);
    }
    waitpid(kid, NULL, 0);
    close(sv[0]);
    close(p[0]);
    *p50 = pct(lat, n, 0.50);
    *p99 = pct(lat, n, 0.99);
}

/* ---- 4. open through mmkitd vs shm_open ------------------------------------------ */

#define OPENS 2000

static double open_mmkitd(mmk_client *c)
{
    double t0 = bench_now();
    for (int i = 0; i < OPENS; i++) {
        int fd = mmk_seg_open(c, "direct", MMK_SEG_RDONLY, NULL);
        void *p = mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, 0);
        munmap(p, 65536);
        close(fd);
    }
    double dt = (bench_now() - t0) / OPENS * 1e6;
    for (int i = 0; i < OPENS; i++)
        mmk_seg_release(c, "direct");
    return dt;
}

static double ping_mmkitd(mmk_client *c)
{
    double t0 = bench_now();
    for (int i = 0; i < OPENS; i++) {
        mmk_request q = { .op = MMK_OP_PING };
        mmk_message m;
        mmk_client_submit(c, &q);
        mmk_client_recv(c, &m, 5000);
    }
    return (bench_now() - t0) / OPENS * 1e6;
}

/* Pin pid (0: this process) to cpu, or let it run anywhere (cpu < 0). */
static void pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < n && i < CPU_SETSIZE; i++)
        if (cpu < 0 || i == cpu)
            CPU_SET(i, &set);
    sched_setaffinity(pid, sizeof set, &set);
}

/* A bare request and reply between two processes: one SOCK_SEQPACKET
 * datagram each way, no server logic.  The floor of any mmkitd call. */
static double bare_round_trip(int server_cpu)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        exit(1);
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        close(sv[0]);
        if (server_cpu >= 0)
            pin(0, server_cpu);
        char b[64];
        for (ssize_t n; (n = recv(sv[1], b, sizeof b, 0)) > 0;)
            if (send(sv[1], b, (size_t)n, 0) != n)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    char b[64] = { 0 };
    double t0 = bench_now();
    for (int i = 0; i < OPENS; i++)
        if (send(sv[0], b, 42, 0) != 42 || recv(sv[0], b, sizeof b, 0) <= 0)
            exit(1);
    double dt = (bench_now() - t0) / OPENS * 1e6;
    close(sv[0]);
    waitpid(kid, NULL, 0);
    return dt;
}

static double open_shm(const char *name)
{
    double t0 = bench_now();
    for (int i = 0; i < OPENS; i++) {
        int fd = shm_open(name, O_RDONLY, 0);
        void *p = mmap(NULL, 65536, PROT_READ, MAP_SHARED, fd, 0);
        munmap(p, 65536);
        close(fd);
    }
    return (bench_now() - t0) / OPENS * 1e6;
}

int main(int argc, char **argv)
{
    (void)argc;
    start_server(argv[0]);
    mmk_client *admin = must_connect();

    /* 1 */
    mmk_seg_create(admin, "many", 65536, 0644);
    static mmk_client *cl[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        cl[i] = must_connect();
    double rate[5];
    int errors = 0;
    for (int r = 0; r < 5; r++)
        rate[r] = many_opens(cl, &errors);
    for (int i = 0; i < CLIENTS; i++)
        mmk_client_close(cl[i]);
    bench_header("server/clients", "1,000 clients connected at once, each opening and mapping a segment");
    bench_row("opens + mmap per second, 1,000 clients", bench_median(rate, 5), "opens/s", 0);
    printf("| errors | %d | count | goal 0 |\n", errors);

    /* 2, 3 */
    double f50, f99, e50, e99, i50, i99, m50, m99, k50, k99;
    bare_latency(&f50, &f99);
    kernel_floor(&k50, &k99);
    event_latency(&e50, &e99, 1);
    event_latency(&m50, &m99, 0);
    static mmk_client *idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        idle[i] = must_connect();
    event_latency(&i50, &i99, 1);
    for (int i = 0; i < IDLE; i++)
        mmk_client_close(idle[i]);
    bench_header("server/events", "publish to receipt by 100 subscribers (the floor: one SOCK_SEQPACKET datagram between two processes)");
    bench_row("floor: bare SOCK_SEQPACKET send to receive, p50", f50, "us", 0);
    bench_row("kernel floor of the delivery, no mmkit: 2 hops + one bell for 100 epoll sets, p50", k50, "us", f50);
    bench_row("event to 100 subscribers, p50 (goal <= 3x floor)", e50, "us", f50);
    bench_row("  the same vs the kernel floor of the delivery", e50, "us", k50);
    bench_row("floor p99", f99, "us", 0);
    bench_row("kernel floor of the delivery, p99", k99, "us", 0);
    bench_row("event to 100 subscribers, p99", e99, "us", 0);
    bench_row("the same as event messages (MMKIT_EVENT_RING=0), p50", m50, "us", f50);
    bench_row("the same as event messages, p99", m99, "us", 0);
    bench_row("event to 100 subscribers, 500 idle connections, p50", i50, "us", e50);
    bench_row("event to 100 subscribers, 500 idle connections, p99 (goal <= 1.5x)", i99, "us", e99);

    /* 4 */
    mmk_seg_create(admin, "direct", 65536, 0644);
    char shm_name[64];
    snprintf(shm_name, sizeof shm_name, "/mmkit-bench-%d", (int)getpid());
    int sfd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (sfd < 0 || ftruncate(sfd, 65536) != 0) {
        perror("shm_open");
        return 1;
    }
    close(sfd);
    /* Where the scheduler puts the two processes decides the round trip on
     * a VM (waking an idle vCPU is dear), so the open is measured three
     * ways: placed by the scheduler, both on one CPU, on two CPUs. */
    static const struct { const char *what; int server, client; } place[] = {
        { "placed by the scheduler", -1, -1 },
        { "server and client on one CPU", 0, 0 },
        { "server and client on two CPUs", 0, 1 },
    };
    int nplace = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 3 : 2;
    bench_header("server/open", "open a 64 KiB segment and map it (read-only), then unmap and close");
    for (int k = 0; k < nplace; k++) {
        pin(server_pid, place[k].server);
        pin(0, place[k].client);
        double a[BENCH_RUNS], b[BENCH_RUNS], c[BENCH_RUNS], d[BENCH_RUNS];
        for (int r = 0; r < BENCH_RUNS; r++) {
            a[r] = open_shm(shm_name);
            b[r] = open_mmkitd(admin);
            c[r] = ping_mmkitd(admin);
            d[r] = bare_round_trip(place[k].server);
        }
        double an = bench_median(a, BENCH_RUNS);
        printf("| *%s* | | | |\n", place[k].what);
        bench_row("shm_open + mmap (anchor)", an, "us", 0);
        bench_row(k ? "mmk_seg_open through mmkitd + mmap"
                    : "mmk_seg_open through mmkitd + mmap (goal <= 3x)",
                  bench_median(b, BENCH_RUNS), "us", an);
        bench_row("mmkitd round trip (ping), for scale", bench_median(c, BENCH_RUNS), "us", an);
        bench_row("floor: bare SOCK_SEQPACKET round trip between two processes",
                  bench_median(d, BENCH_RUNS), "us", an);
    }
    pin(server_pid, -1);
    pin(0, -1);
    shm_unlink(shm_name);

    mmk_client_close(admin);
    stop_server();
    return errors ? 1 : 0;
}
