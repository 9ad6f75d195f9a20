/*
 * bench.h - tiny helpers shared by the benchmarks: a monotonic clock, the
 * median of several runs, a table printer with ratios against an anchor,
 * a sample run in a child process, and a private mmkitd to measure against.
 *
 * Every benchmark prints its table to stdout in the same format so that
 * bench/run.sh can collect them for the README:
 *
 *   ## name - what is measured
 *   | case | median | unit | vs anchor |
 */
#ifndef MMK_BENCH_H
#define MMK_BENCH_H

#include "mmkit.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_RUNS
#define BENCH_RUNS 7
#endif

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n samples (sorts the array in place). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void bench_header(const char *name, const char *what)
{
    printf("\n## %s - %s\n\n", name, what);
    printf("| case | median | unit | vs anchor |\n|---|---:|---|---:|\n");
}

/* One table row; anchor <= 0 prints "anchor" in the ratio column. */
static inline void bench_row(const char *name, double value, const char *unit, double anchor)
{
    if (anchor <= 0)
        printf("| %s | %.3f | %s | anchor |\n", name, value, unit);
    else
        printf("| %s | %.3f | %s | %.2fx |\n", name, value, unit, value / anchor);
    fflush(stdout);
}

/* Fork, run fn(arg, out) in the child and copy its len bytes of out back
 * through a pipe, so that no sample inherits another's memory.  0, or -1
 * when the child failed (fn < 0, a crash) or sent less. */
static inline int bench_in_child(int (*fn)(int, void *), int arg, void *out, size_t len)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        int ok = fn(arg, out) == 0 && write(p[1], out, len) == (ssize_t)len;
        _exit(ok ? 0 : 1);
    }
    close(p[1]);
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(p[0], (char *)out + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return got == len && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The mmkit binary one directory above the benchmark's: dirname(argv0)/../mmkit. */
static inline void bench_mmkit_path(const char *argv0, char *bin, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", argv0);
    snprintf(bin, cap, "%s/../mmkit", dirname(dir));
}

/* Wait up to about 5 s for the mmkitd started from bin to answer on sock;
 * if it does not, say so as who and exit(1). */
static inline void bench_wait_server(const char *who, const char *sock, const char *bin)
{
    for (int i = 0; i < 500; i++) {
        mmk_client *c = mmk_client_connect(sock, 1000);
        if (c) {
            mmk_client_close(c);
            return;
        }
        usleep(10000);
    }
    fprintf(stderr, "%s: the server did not start (%s)\n", who, bin);
    exit(1);
}

/* Make h (SA_SIGINFO, SA_NODEFER: it may fault again at once) the SIGSEGV
 * handler, for the bare-signal floors.  0 or -1. */
static inline int bench_on_segv(void (*h)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSEGV, &sa, NULL) != 0 ? -1 : 0;
}

#endif
