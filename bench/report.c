/*
 * bench/report.c - the price of a readable fault report.
 *
 * One fault on a protected page, handled by an area handler that opens the
 * page and retries (the anchor), then the same with a report of the fault:
 * raw frames (no reporter thread: written at once from the handler), and
 * frames named by the reporter thread (libdwfl, objects cached after the
 * first report).  Last, one watched write through a mirror in watch mode,
 * named, as a user sees it.  Reports go to /dev/null.  Each case runs in
 * its own process (the reporter thread cannot be stopped once started).
 */
#include "bench.h"
#include "mmkit.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FAULTS = 200, WARM = 5 };
enum { CASE_BARE, CASE_RAW, CASE_NAMED, CASE_WATCH };

static char *page;
static int mode;

static int on_fault(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    if (mode == CASE_RAW || mode == CASE_NAMED)
        mmk_fault_report(f, "bench fault", 0);
    mprotect(page, 4096, PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

/* Median microseconds of one fault (+ report) in this process. */
static double run_case(int c)
{
    mode = c;
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    double t[FAULTS];
    if (c == CASE_WATCH) {
        mmk_mirror *m = mmk_mirror_create(4096, 0);
        if (!m || mmk_mirror_set_policy(m, MMK_MIRROR_WATCH, NULL, NULL) != 0)
            return -1;
        volatile char *ro = (volatile char *)(uintptr_t)mmk_mirror_ro(m);
        for (int i = 0; i < WARM; i++)
            ro[0] = 1;
        for (int i = 0; i < FAULTS; i++) {
            double t0 = bench_now();
            ro[i % 64] = (char)i;
            t[i] = bench_now() - t0;
        }
        return bench_median(t, FAULTS) * 1e6;
    }
    page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED || !mmk_area_register(page, 4096, on_fault, NULL))
        return -1;
    if (c == CASE_NAMED && mmk_report_start() != 0)
        return -1;
    for (int i = 0; i < FAULTS + WARM; i++) {
        mprotect(page, 4096, PROT_NONE);
        double t0 = bench_now();
        ((volatile char *)page)[0] = 1;
        double dt = bench_now() - t0;
        if (i >= WARM)
            t[i - WARM] = dt;
    }
    return bench_median(t, FAULTS) * 1e6;
}

static int case_fn(int c, void *out)
{
    *(double *)out = run_case(c);
    return 0;
}

/* Run a case in a child and read its median back through a pipe. */
static double in_child(int c)
{
    double v = -1;
    if (bench_in_child(case_fn, c, &v, sizeof v) != 0)
        return -1;
    return v;
}

int main(void)
{
    bench_header("report", "one fault with a report of its frames (median of 200, after 5 warm-up)");
    double bare = in_child(CASE_BARE);
    double raw = in_child(CASE_RAW);
    double named = in_child(CASE_NAMED);
    double watch = in_child(CASE_WATCH);
    if (bare <= 0 || raw <= 0 || named <= 0 || watch <= 0) {
        fprintf(stderr, "bench/report: a case failed\n");
        return 1;
    }
    bench_row("fault, handler opens the page, retry (no report)", bare, "us", 0);
    bench_row("the same + report, raw frames (build-id, offsets)", raw, "us", bare);
    bench_row("the same + report, frames named by the reporter thread", named, "us", bare);
    bench_row("watch mode: one watched write, named report", watch, "us", bare);
    printf("\nnamed / raw: %.2fx\n", named / raw);
    return 0;
}
