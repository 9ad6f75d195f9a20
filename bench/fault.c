/*
 * bench/fault.c - the fault router against GNU libsigsegv.
 *
 * One round trip is: mprotect(page, PROT_NONE); store into the page; the
 * store faults; the handler finds the owner of the address, mprotects the
 * page read-write and asks for a retry; the store runs again.  We report
 * nanoseconds per round trip, with nothing subtracted, for:
 *
 *   - mmkit: mmk_area_register + the router;
 *   - libsigsegv: sigsegv_install_handler + a sigsegv_dispatcher holding the
 *     same areas (sigsegv_register), so both do per-area dispatch;
 *   - a bare sigaction handler that knows the page without any lookup: the
 *     floor for any signal-based scheme;
 *   - the mprotect pair and the store with no signal at all: what the kernel
 *     work costs before a signal is delivered.
 *
 * Then the same round trip with 1, 100, 1,000 and 10,000 registered areas,
 * to see how the lookup grows.  In every case the faults rotate over 32
 * pages; with many areas those pages lie in areas spread through the table,
 * so neither lookup gets to learn one fixed path.
 *
 * mmkit and libsigsegv both want to own SIGSEGV.  Every sample therefore runs
 * in its own child process, which sets up one case, measures it once and
 * sends the result back through a pipe.  The samples of all cases are taken
 * in interleaved rounds (case 1, case 2, ..., case 1, case 2, ...) so that a
 * slow stretch of the machine hits every case alike; each row is the median
 * of BENCH_RUNS samples.
 */
/* Many short samples, interleaved, resist a noisy machine better than a few
 * long ones. */
#define BENCH_RUNS 15
#include "bench.h"
#include "mmkit.h"

#include <errno.h>
#include <signal.h>
#include <sigsegv.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUND_TRIPS 4000  /* timed round trips per sample */
#define WARMUP 500        /* untimed round trips before each sample */
#define MAX_TARGETS 32    /* distinct pages the faults rotate over */
#define MIN_PAGES 128     /* pages in the smallest mapping */

enum method { M_MPROTECT, M_BARE, M_SIGSEGV, M_MMKIT };

struct bench_case {
    enum method method;
    size_t areas;
    const char *name;
};

static const struct bench_case cases[] = {
    { M_MPROTECT, 1, "mprotect pair + store, no signal" },
    { M_BARE, 1, "bare sigaction handler (no lookup)" },
    { M_SIGSEGV, 1, "libsigsegv dispatcher" },
    { M_MMKIT, 1, "mmkit router" },
    { M_BARE, 100, "bare sigaction handler (no lookup)" },
    { M_SIGSEGV, 100, "libsigsegv dispatcher" },
    { M_MMKIT, 100, "mmkit router" },
    { M_BARE, 1000, "bare sigaction handler (no lookup)" },
    { M_SIGSEGV, 1000, "libsigsegv dispatcher" },
    { M_MMKIT, 1000, "mmkit router" },
    { M_BARE, 10000, "bare sigaction handler (no lookup)" },
    { M_SIGSEGV, 10000, "libsigsegv dispatcher" },
    { M_MMKIT, 10000, "mmkit router" },
};
#define NCASES (sizeof cases / sizeof cases[0])

static size_t page_size;
static volatile unsigned long handled; /* faults the handlers resolved */

/* ---- the three handlers: each makes its page writable and retries ------ */

static void *page_of(void *addr)
{
    return (void *)((uintptr_t)addr & ~(uintptr_t)(page_size - 1));
}

static void bare_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    if (mprotect(page_of(si->si_addr), page_size, PROT_READ | PROT_WRITE) != 0)
        _exit(3);
    handled++;
}

static int mmkit_area_fn(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    if (mprotect(page_of(f->addr), page_size, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    handled++;
    return MMK_FAULT_RETRY;
}

static sigsegv_dispatcher dispatcher;

static int sigsegv_area_fn(void *fault_address, void *user_arg)
{
    (void)user_arg;
    if (mprotect(page_of(fault_address), page_size, PROT_READ | PROT_WRITE) != 0)
        return 0;
    handled++;
    return 1;
}

static int sigsegv_global_fn(void *fault_address, int serious)
{
    (void)serious;
    return sigsegv_dispatch(&dispatcher, fault_address);
}

/* ---- one sample, in a child process -------------------------------------- */

/* Store into each target in turn, re-protecting it first; n round trips. */
static void round_trips(char *const *targets, size_t ntargets, unsigned long n, int protect)
{
    size_t t = 0;
    for (unsigned long i = 0; i < n; i++) {
        char *p = targets[t];
        if (mprotect(p, page_size, PROT_NONE) != 0)
            _exit(3);
        if (!protect && mprotect(p, page_size, PROT_READ | PROT_WRITE) != 0)
            _exit(3);
        *(volatile char *)p = (char)i;
        if (++t == ntargets)
            t = 0;
    }
}

/* Pages in the mapping of a case with n areas: a whole number of pages per
 * area, at least MIN_PAGES in all. */
static size_t mapping_pages(size_t n)
{
    return n < MIN_PAGES ? MIN_PAGES / n * n : n;
}

/* Set the case up, measure it once, return ns per round trip (or < 0). */
static double sample(const struct bench_case *c, double *setup_ms)
{
    /*
     * Every case faults on 32 pages of one mapping of at least 128 pages, so
     * the kernel does the same work in all of them.  The target pages are
     * read-write and never adjacent; every other page is read-only and never
     * touched.  Each target is thus a mapping (VMA) of its own, and the
     * mprotect calls change its protection in place instead of splitting and
     * re-merging a large mapping, which would cost more than the signal and
     * drown the differences we are after.  Only the number of areas the
     * targets are registered in changes: one area of 128 pages, or one page
     * per area.
     */
    size_t n = c->areas;
    size_t npages = mapping_pages(n);
    size_t area_len = npages / n * page_size;
    char *base = mmap(NULL, npages * page_size, PROT_READ,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -1;

    double s0 = bench_now();
    switch (c->method) {
    case M_MPROTECT:
        break;
    case M_BARE:
        if (bench_on_segv(bare_handler) != 0)
            return -1;
        break;
    case M_SIGSEGV:
        sigsegv_init(&dispatcher);
        for (size_t i = 0; i < n; i++)
            if (!sigsegv_register(&dispatcher, base + i * area_len, area_len,
                                  sigsegv_area_fn, NULL))
                return -1;
        if (sigsegv_install_handler(sigsegv_global_fn) != 0)
            return -1;
        break;
    case M_MMKIT:
        for (size_t i = 0; i < n; i++)
            if (!mmk_area_register(base + i * area_len, area_len, mmkit_area_fn, NULL))
                return -1;
        if (mmk_fault_area_count() != n)
            return -1;
        break;
    }

    *setup_ms = (bench_now() - s0) * 1e3;

    /* Spread the targets evenly over the mapping (and so over the table),
     * so the lookups walk many different paths. */
    char *targets[MAX_TARGETS];
    size_t ntargets = MAX_TARGETS;
    for (size_t t = 0; t < ntargets; t++) {
        targets[t] = base + (t * npages / ntargets + npages / ntargets / 2) * page_size;
        if (mprotect(targets[t], page_size, PROT_READ | PROT_WRITE) != 0)
            return -1;
    }

    int faults = c->method != M_MPROTECT;
    round_trips(targets, ntargets, WARMUP, faults);
    handled = 0;
    double t0 = bench_now();
    round_trips(targets, ntargets, ROUND_TRIPS, faults);
    double t1 = bench_now();
    if (faults && handled != ROUND_TRIPS)
        return -1; /* some handler did not run: the numbers would lie */
    return (t1 - t0) * 1e9 / ROUND_TRIPS;
}

/* One sample of case c (an index into cases), in bench_in_child: out gets
 * ns per round trip (< 0 when the case failed) and the setup time. */
static int sample_fn(int c, void *out)
{
    double *v = out;
    v[0] = sample(&cases[c], &v[1]);
    return 0;
}

/* Run one sample of case c in a child; ns per round trip, or < 0. */
static double sample_in_child(size_t c, double *setup_ms)
{
    double v[2] = { -1, 0 };
    if (bench_in_child(sample_fn, (int)c, v, sizeof v) != 0)
        return -1;
    *setup_ms = v[1];
    return v[0];
}

static double median_of(size_t i, double samples[][BENCH_RUNS])
{
    double v[BENCH_RUNS];
    memcpy(v, samples[i], sizeof v);
    return bench_median(v, BENCH_RUNS);
}

/* The median over rounds of sample(i) - sample(j): samples of one round are
 * taken seconds apart, so a slow stretch of the machine cancels out. */
static double paired_difference(double samples[][BENCH_RUNS], size_t i, size_t j)
{
    double d[BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++)
        d[r] = samples[i][r] - samples[j][r];
    return bench_median(d, BENCH_RUNS);
}

static size_t find_case(enum method m, size_t areas)
{
    for (size_t i = 0; i < NCASES; i++)
        if (cases[i].method == m && cases[i].areas == areas)
            return i;
    abort();
}

int main(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    static double samples[NCASES][BENCH_RUNS], setup[NCASES][BENCH_RUNS];
    for (int r = 0; r < BENCH_RUNS; r++)
        for (size_t i = 0; i < NCASES; i++) {
            samples[i][r] = sample_in_child(i, &setup[i][r]);
            if (samples[i][r] < 0) {
                fprintf(stderr, "bench/fault: case '%s' with %zu areas failed\n",
                        cases[i].name, cases[i].areas);
                return 1;
            }
        }
    double med[NCASES];
    for (size_t i = 0; i < NCASES; i++)
        med[i] = median_of(i, samples);

    double anchor = med[find_case(M_SIGSEGV, 1)];
    bench_header("fault", "round trip fault -> handler -> mprotect RW -> retry, one area of 128 pages");
    bench_row("libsigsegv dispatcher, 1 area", anchor, "ns", 0);
    bench_row("mmkit router, 1 area", med[find_case(M_MMKIT, 1)], "ns", anchor);
    bench_row("bare sigaction handler (floor)", med[find_case(M_BARE, 1)], "ns", anchor);
    bench_row("mprotect pair + store, no signal (reference)", med[find_case(M_MPROTECT, 1)],
              "ns", anchor);

    /*
     * With N areas the mapping holds N pages, and the kernel's share of the
     * round trip changes with that alone, so each N gets its own floor: the
     * bare handler on a mapping of the same size.  What a router adds on top
     * of its floor is the cost of its lookup and bookkeeping.
     */
    static const size_t counts[] = { 1, 100, 1000, 10000 };
    bench_header("fault-areas", "the same round trip with N registered areas "
                                "(faults rotate over 32 pages)");
    double added_mmkit[4], added_sigsegv[4];
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        char name[80];
        const char *plural = counts[k] == 1 ? "" : "s";
        double s = med[find_case(M_SIGSEGV, counts[k])];
        double m = med[find_case(M_MMKIT, counts[k])];
        double floor = med[find_case(M_BARE, counts[k])];
        snprintf(name, sizeof name, "libsigsegv dispatcher, %zu area%s", counts[k], plural);
        bench_row(name, s, "ns", 0);
        snprintf(name, sizeof name, "mmkit router, %zu area%s", counts[k], plural);
        bench_row(name, m, "ns", s);
        snprintf(name, sizeof name, "bare sigaction, %zu-page mapping (floor)",
                 mapping_pages(counts[k]));
        bench_row(name, floor, "ns", s);
        added_mmkit[k] = paired_difference(samples, find_case(M_MMKIT, counts[k]),
                                           find_case(M_BARE, counts[k]));
        added_sigsegv[k] = paired_difference(samples, find_case(M_SIGSEGV, counts[k]),
                                             find_case(M_BARE, counts[k]));
    }

    /* Registering is not the hot path, but it should not take seconds. */
    bench_header("fault-register", "registering N areas, one by one (setup of the cases above)");
    for (size_t k = 1; k < sizeof counts / sizeof counts[0]; k++) {
        char name[80];
        double s = median_of(find_case(M_SIGSEGV, counts[k]), setup);
        snprintf(name, sizeof name, "libsigsegv sigsegv_register x %zu", counts[k]);
        bench_row(name, s, "ms", 0);
        snprintf(name, sizeof name, "mmkit mmk_area_register x %zu", counts[k]);
        bench_row(name, median_of(find_case(M_MMKIT, counts[k]), setup), "ms", s);
    }

    /* A logarithmic lookup adds about the same for each doubling of the
     * table (10,000 areas is 13.3 doublings); a linear one would add more and
     * more.  These differences are small against the round trip, so read
     * them as "how much, roughly", not to the nanosecond. */
    printf("\nadded over the floor (median of per-round differences) at 1 / 100 / 1,000 / 10,000 areas:\n"
           "  mmkit      %+.0f / %+.0f / %+.0f / %+.0f ns\n"
           "  libsigsegv %+.0f / %+.0f / %+.0f / %+.0f ns\n",
           added_mmkit[0], added_mmkit[1], added_mmkit[2], added_mmkit[3],
           added_sigsegv[0], added_sigsegv[1], added_sigsegv[2], added_sigsegv[3]);
    return 0;
}
