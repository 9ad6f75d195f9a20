/*
 * bench.h - tiny helpers shared by the benchmarks: a monotonic clock, the
 * median of several runs, and a table printer with ratios against an anchor.
 *
 * Every benchmark prints its table to stdout in the same format so that
 * bench/run.sh can collect them for the README:
 *
 *   ## name - what is measured
 *   | case | median | unit | vs anchor |
 */
#ifndef MMK_BENCH_H
#define MMK_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#endif
