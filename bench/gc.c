/*
 * bench/gc.c - the lazy copying collector of examples/lazy_gc.h against a
 * stop-the-world copy of the same heap.
 *
 * The heap: a 256 MiB semispace filled with objects of 32 to 224 bytes
 * (two to four pointers each), every other one live.  The live objects form
 * one chain (each points to the previous live one) with random cross links
 * to older live objects; the dead ones point into the live graph too.
 *
 * Each sample builds that heap in a child process, then runs every case in a
 * grandchild on a private copy of it (same bytes, same addresses, every page
 * mapped and touched beforehand), so each case collects exactly the same
 * heap:
 *
 *   - stop-the-world: collect (the pause is the whole copy), then read the
 *     whole graph once (a traversal with no faults: the reference);
 *   - lazy, read all: collect (the pause: flip and roots), read the whole
 *     graph (every page with live data faults once and is scanned by the
 *     handler), gc_finish;
 *   - lazy, read nothing: collect, gc_finish at once (the scan in bulk).
 *
 * Before each collection the case reads the graph once, as a program would
 * have, so that the caches hold the same things in every case.
 *
 * The lazy collector's total is pause + (its traversal - the reference
 * traversal) + finish: the price of laziness.  The fault cost per scanned
 * page is that traversal difference divided by the faults.  The floors come
 * first: a memcpy of the live bytes (no collector can copy faster) and a bare
 * SIGSEGV round trip (fault, handler, mprotect one page read-write, retry).
 */
#define BENCH_RUNS 3 /* each sample builds and copies a 256 MiB heap four times */
#include "bench.h"
#include "../examples/lazy_gc.h"

#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEMI ((size_t)256 << 20)
#define FILL (SEMI - ((size_t)8 << 20)) /* bytes of objects built */

static struct gc heap;
static uint64_t rng = 0x2545f4914f6cdd1du;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ---- the heap -------------------------------------------------------------- */

static size_t built_live, built_live_bytes;

static int build(void)
{
    void **live = malloc((FILL / 32) * sizeof *live);
    if (!live)
        return -1;
    size_t nlive = 0, used = 0;
    while (used < FILL) {
        size_t np = 2 + next_rand() % 3, nb = 8 + next_rand() % 8 * 16;
        void *o = gc_alloc(&heap, np, nb);
        if (!o)
            break;
        used += gc_size(o);
        uint64_t id = used;
        memcpy(gc_bytes(o), &id, 8);
        void **p = gc_ptrs(o);
        int is_live = next_rand() & 1;
        if (is_live) {
            p[0] = nlive ? live[nlive - 1] : NULL;
            for (size_t i = 1; i < np; i++)
                p[i] = nlive ? live[next_rand() % nlive] : NULL;
            live[nlive++] = o;
            built_live_bytes += gc_size(o);
        } else {
            for (size_t i = 0; i < np; i++)
                p[i] = nlive ? live[next_rand() % nlive] : NULL;
        }
    }
    heap.roots[0] = nlive ? live[nlive - 1] : NULL;
    built_live = nlive;
    free(live);
    return 0;
}

/* The program: visit every live object once (depth first, a side bitmap for
 * marks), reading its id.  Returns the objects visited. */
static uint64_t *marks;
static void **stack;

static size_t traverse(uint64_t *sum)
{
    memset(marks, 0, 2 * heap.semi / 64);
    size_t sp = 0, n = 0;
    uint64_t s = 0;
    if (heap.roots[0])
        stack[sp++] = heap.roots[0];
    while (sp) {
        void *o = stack[--sp];
        size_t bit = (size_t)((char *)o - heap.view) / 8;
        if (marks[bit / 64] & (uint64_t)1 << (bit % 64))
            continue;
        marks[bit / 64] |= (uint64_t)1 << (bit % 64);
        n++;
        s += *(uint64_t *)gc_bytes(o);
        void **p = gc_ptrs(o);
        for (size_t i = gc_nptrs(o); i-- > 0;)
            if (p[i])
                stack[sp++] = p[i];
    }
    *sum = s;
    return n;
}

/* ---- the cases -------------------------------------------------------------- */

enum { C_STW, C_LAZY_ALL, C_LAZY_NONE, NCASES };

struct result {
    double pause_ms, trav_ms, finish_ms, unprotect_ms, reprotect_ms, handler_ms;
    size_t faults, finish_pages, objects, bytes, visited, overflow;
};

static int run_case(int c, struct result *r)
{
    heap.lazy = c != C_STW;
    if (gc_clone_private(&heap) != 0)
        return -1;
    uint64_t sum0, sum1;
    size_t before = traverse(&sum0); /* what the program did before collecting */
    gc_collect(&heap);
    r->pause_ms = heap.stats.pause_ns / 1e6;
    if (c != C_LAZY_NONE) {
        double t0 = bench_now();
        r->visited = traverse(&sum1);
        r->trav_ms = (bench_now() - t0) * 1e3;
        if (r->visited != before || sum1 != sum0)
            return -1; /* the collector lost or changed something */
    }
    r->faults = heap.stats.faults;
    gc_finish(&heap);
    r->finish_ms = heap.stats.finish_ns / 1e6;
    r->unprotect_ms = heap.stats.unprotect_ns / 1e6;
    r->reprotect_ms = heap.stats.reprotect_ns / 1e6;
    r->overflow = heap.stats.overflow;
    r->handler_ms = heap.stats.handler_ns / 1e6;
    r->finish_pages = heap.stats.finish_pages;
    r->objects = heap.stats.objects;
    r->bytes = heap.stats.bytes;
    return r->objects == before ? 0 : -1;
}

static int case_fn(int c, void *out) { return run_case(c, out); }

struct sample {
    struct result r[NCASES];
    size_t live, live_bytes;
};

/* One sample: build the heap, run every case on a copy of it. */
static int sample_fn(int seed, void *out)
{
    struct sample *s = out;
    rng ^= (uint64_t)seed * 0x9e3779b97f4a7c15u;
    if (gc_init(&heap, SEMI, 1, 1) != 0)
        return -1;
    marks = malloc(2 * SEMI / 64);
    stack = malloc((SEMI / 32) * 4 * sizeof *stack);
    if (!marks || !stack || build() != 0)
        return -1;
    s->live = built_live;
    s->live_bytes = built_live_bytes;
    for (int c = 0; c < NCASES; c++)
        if (bench_in_child(case_fn, c, &s->r[c], sizeof s->r[c]) != 0)
            return -1;
    return 0;
}

/* ---- floors ------------------------------------------------------------------ */

static size_t floor_page;

static void floor_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char *p = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(floor_page - 1));
    if (mprotect(p, floor_page, PROT_READ | PROT_WRITE) != 0)
        _exit(3);
}

struct floors {
    double memcpy_ms, fault_us;
};

static int floors_fn(int bytes_mib, void *out)
{
    struct floors *f = out;
    size_t len = (size_t)bytes_mib << 20;
    char *a = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        return -1;
    memset(a, 1, 2 * len);
    memcpy(a + len, a, len); /* once to warm up */
    double t0 = bench_now();
    memcpy(a + len, a, len);
    f->memcpy_ms = (bench_now() - t0) * 1e3;

    floor_page = (size_t)sysconf(_SC_PAGESIZE);
    if (bench_on_segv(floor_handler) != 0)
        return -1;
    size_t pages = 4096 < len / floor_page ? 4096 : len / floor_page;
    if (mprotect(a, pages * floor_page, PROT_NONE) != 0)
        return -1;
    t0 = bench_now();
    for (size_t i = 0; i < pages; i++)
        ((volatile char *)a)[i * floor_page]++;
    f->fault_us = (bench_now() - t0) * 1e6 / (double)pages;
    return 0;
}

/* ---- main ---------------------------------------------------------------------- */

static double med(struct sample *s, double (*get)(const struct sample *))
{
    double v[BENCH_RUNS];
    for (int i = 0; i < BENCH_RUNS; i++)
        v[i] = get(&s[i]);
    return bench_median(v, BENCH_RUNS);
}

#define R(c, field) (s->r[c].field)
static double stw_pause(const struct sample *s) { return R(C_STW, pause_ms); }
static double stw_trav(const struct sample *s) { return R(C_STW, trav_ms); }
static double lazy_pause(const struct sample *s) { return R(C_LAZY_ALL, pause_ms); }
static double lazy_trav(const struct sample *s) { return R(C_LAZY_ALL, trav_ms); }
static double lazy_all_total(const struct sample *s)
{
    return R(C_LAZY_ALL, pause_ms) + R(C_LAZY_ALL, trav_ms) - R(C_STW, trav_ms) +
           R(C_LAZY_ALL, finish_ms);
}
static double lazy_all_finish(const struct sample *s) { return R(C_LAZY_ALL, finish_ms); }
static double lazy_none_pause(const struct sample *s) { return R(C_LAZY_NONE, pause_ms); }
static double lazy_none_total(const struct sample *s)
{
    return R(C_LAZY_NONE, pause_ms) + R(C_LAZY_NONE, finish_ms);
}
static double reprotect(const struct sample *s) { return R(C_LAZY_NONE, reprotect_ms); }
static double unprotect(const struct sample *s) { return R(C_LAZY_NONE, unprotect_ms); }
static double scan_in_finish(const struct sample *s)
{
    return R(C_LAZY_NONE, finish_ms) - R(C_LAZY_NONE, unprotect_ms) - R(C_LAZY_NONE, reprotect_ms);
}
static double per_fault(const struct sample *s)
{
    return (R(C_LAZY_ALL, trav_ms) - R(C_STW, trav_ms)) * 1e3 / (double)R(C_LAZY_ALL, faults);
}
static double handler_per_fault(const struct sample *s)
{
    return R(C_LAZY_ALL, handler_ms) * 1e3 / (double)R(C_LAZY_ALL, faults);
}
static double stw_per_page(const struct sample *s)
{
    return R(C_STW, pause_ms) * 1e3 / (double)(R(C_LAZY_ALL, faults) + R(C_LAZY_ALL, finish_pages));
}

int main(void)
{
    static struct sample samples[BENCH_RUNS];
    struct floors fl[BENCH_RUNS];
    double fm[BENCH_RUNS], ff[BENCH_RUNS];
    for (int i = 0; i < BENCH_RUNS; i++) {
        if (bench_in_child(sample_fn, i, &samples[i], sizeof samples[i]) != 0) {
            fprintf(stderr, "bench/gc: sample %d failed\n", i);
            return 1;
        }
        size_t live_mib = (samples[i].live_bytes >> 20) + 1;
        if (bench_in_child(floors_fn, (int)live_mib, &fl[i], sizeof fl[i]) != 0) {
            fprintf(stderr, "bench/gc: floors failed\n");
            return 1;
        }
        fm[i] = fl[i].memcpy_ms;
        ff[i] = fl[i].fault_us;
    }
    const struct sample *s0 = &samples[0];
    double fault_floor = bench_median(ff, BENCH_RUNS);

    bench_header("gc-floors", "what this machine allows");
    char name[120];
    snprintf(name, sizeof name, "memcpy of the live bytes (%zu MiB)", (s0->live_bytes >> 20) + 1);
    bench_row(name, bench_median(fm, BENCH_RUNS), "ms", 0);
    bench_row("SIGSEGV + mprotect one page RW + retry (bare handler)", fault_floor, "us", 0);

    double stw = med(samples, stw_pause);
    snprintf(name, sizeof name, "lazy copying vs stop-the-world, %zu MiB semispace, "
                                "%zu live objects (%zu MiB) of %zu MiB",
             SEMI >> 20, s0->live, s0->live_bytes >> 20, FILL >> 20);
    bench_header("gc", name);
    bench_row("stop-the-world pause (copy everything)", stw, "ms", 0);
    bench_row("lazy pause (flip + roots; goal <= 0.05x)", med(samples, lazy_pause), "ms", stw);
    bench_row("lazy total, program reads all: pause + fault overhead + finish",
              med(samples, lazy_all_total), "ms", stw);
    bench_row("  of which gc_finish (unprotect to-space, protect from-space)",
              med(samples, lazy_all_finish), "ms", stw);
    bench_row("lazy, program reads nothing: pause", med(samples, lazy_none_pause), "ms", stw);
    bench_row("lazy total, program reads nothing: pause + finish", med(samples, lazy_none_total),
              "ms", stw);
    bench_row("  of which the scan", med(samples, scan_in_finish), "ms", stw);
    bench_row("  of which opening to-space (mprotect RW)", med(samples, unprotect), "ms", stw);
    bench_row("  of which protecting from-space for the next flip", med(samples, reprotect), "ms",
              stw);
    bench_row("reading the whole graph after stop-the-world (reference)", med(samples, stw_trav),
              "ms", 0);
    bench_row("reading the whole graph after the lazy flip (with its faults)",
              med(samples, lazy_trav), "ms", med(samples, stw_trav));

    bench_header("gc-fault", "the cost of one scanned page");
    bench_row("bare SIGSEGV round trip (floor)", fault_floor, "us", 0);
    bench_row("lazy fault: trap + router + scan + unprotect, per page", med(samples, per_fault),
              "us", fault_floor);
    bench_row("  of which inside the handler (scan + unprotect)", med(samples, handler_per_fault),
              "us", fault_floor);
    bench_row("stop-the-world copy, per page of live data", med(samples, stw_per_page), "us",
              fault_floor);
    printf("\nfaults per lazy collection (program reads all): %zu, pages left to finish: %zu%s; "
           "objects copied: %zu (every case copied the same)\n",
           s0->r[C_LAZY_ALL].faults, s0->r[C_LAZY_ALL].finish_pages,
           s0->r[C_LAZY_ALL].overflow ? " (mapping limit reached: finished early)" : "",
           s0->r[C_LAZY_ALL].objects);
    for (int i = 0; i < BENCH_RUNS; i++)
        for (int c = 0; c < NCASES; c++)
            if (samples[i].r[c].objects != samples[i].live ||
                samples[i].r[c].bytes != samples[i].live_bytes) {
                fprintf(stderr, "bench/gc: case %d copied other objects than the live ones\n", c);
                return 1;
            }
    return 0;
}
