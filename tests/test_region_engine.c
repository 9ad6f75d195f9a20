/* test_region_engine.c - the region engine's promises about mappings and
 * memory: the engine never counts fewer mappings than the kernel holds, the
 * kernel's count in the view space never passes the budget, budgets at every
 * edge, small budgets under snapshot churn, freed pool pages reused and
 * bookkeeping memory given back; and one named test per defect fixed. */
#include "mmkit.h"
#include "maps_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Internals (tests link the static library). */
int mmk__sys_inject(const char *name, int count, int err);
void mmk__engine_space_range(char **base, size_t *len);
void mmk__engine_force_text(int on);
unsigned long mmk__engine_calibrations(void);
long mmk__engine_kernel_count(uintptr_t lo, uintptr_t hi);
void mmk__pool_extent(uint32_t *top, uint32_t *file_pages);
void mmk__vm_lock(void);
void mmk__vm_unlock(void);
/* protect.c (the write-protect methods; same numbering as src/vm.h) */
enum { MMK__PROTECT_MOVE, MMK__PROTECT_MPROTECT, MMK__PROTECT_METHODS };
void mmk__protect_force(int method);
int mmk__protect_method(void);
const char *mmk__protect_name(int method);
long mmk__protect_pending(void);
extern void (*mmk__protect_hole_hook)(void *addr, size_t len);

static size_t PG;

static void setup(void)
{
    PG = (size_t)sysconf(_SC_PAGESIZE);
}

/* The kernel's count of mappings in the whole view space. */
static size_t space_mappings(void)
{
    char *base;
    size_t len;
    mmk__engine_space_range(&base, &len);
    cr_assert_not_null(base);
    return kernel_mappings(base, len);
}

/* Wait until the reaper dropped every scratch range (the kernel's mappings
 * then change only when the test changes them). */
static void quiesce(void)
{
    for (;;) {
        mmk__vm_lock();
        long pending = mmk__protect_pending();
        mmk__vm_unlock();
        if (pending == 0)
            return;
        usleep(1000);
    }
}

static struct mmk_region_stats stats_of(mmk_region *r)
{
    struct mmk_region_stats st;
    cr_assert_eq(mmk_region_stats(r, &st), 0);
    return st;
}

/* The two promises: engine >= kernel (whole space and one view), kernel <=
 * budget. */
static void check_counts(mmk_region *r, const char *what, long step)
{
    const void *base = mmk_region_base(r);
    struct mmk_region_stats st = stats_of(r);
    size_t space = space_mappings(), view = kernel_mappings(base, mmk_region_size(r));
    cr_assert_geq(st.total_mappings, space, "%s step %ld: engine total %zu < kernel %zu", what,
                  step, st.total_mappings, space);
    cr_assert_leq(space, st.budget, "%s step %ld: kernel holds %zu mappings, budget %zu", what,
                  step, space, st.budget);
    cr_assert_geq(st.mappings, view, "%s step %ld: view count %zu < kernel %zu", what, step,
                  st.mappings, view);
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- the model, checked against the kernel after every step ------------------- */

#define VIEWS 10
#define PAGES 80

struct mv {
    mmk_region *r;
    unsigned char *ref;
    int writable;
};

static void model_counts(uint64_t seed, int steps, size_t budget)
{
    if (budget)
        cr_assert_eq(mmk_region_set_budget(budget), 0);
    size_t size = PAGES * PG;
    struct mv m[VIEWS] = { 0 };
    rng_state = seed;
    m[0].r = mmk_region_create(size, 0);
    m[0].ref = calloc(1, size);
    m[0].writable = 1;
    unsigned char *buf = malloc(size);
    for (int step = 0; step < steps; step++) {
        int i = (int)(rng() % VIEWS);
        unsigned op = (unsigned)(rng() % 100);
        if (!m[i].r) {
            int src = (int)(rng() % VIEWS);
            if (!m[src].r || op < 15) {
                m[i].r = mmk_region_create(size, 0);
                m[i].ref = calloc(1, size);
                m[i].writable = 1;
            } else {
                int w = op % 2;
                m[i].r = mmk_region_snapshot(m[src].r, w ? MMK_SNAP_WRITABLE : 0);
                m[i].ref = malloc(size);
                memcpy(m[i].ref, m[src].ref, size);
                m[i].writable = w;
            }
            cr_assert_not_null(m[i].r, "step %d: %s", step, strerror(errno));
        } else if (op < 40 && m[i].writable) { /* scattered writes */
            unsigned char *b = mmk_region_base(m[i].r);
            for (int k = 0; k < 6; k++) {
                size_t off = (rng() % PAGES) * PG + rng() % PG;
                unsigned char c = (unsigned char)rng();
                b[off] = c;
                m[i].ref[off] = c;
            }
        } else if (op < 60) { /* reads by pointer, page order shuffled */
            const unsigned char *b = mmk_region_base(m[i].r);
            for (int k = 0; k < 12; k++) {
                size_t off = (rng() % PAGES) * PG + rng() % PG;
                cr_assert_eq(b[off], m[i].ref[off], "step %d view %d off %zu", step, i, off);
            }
        } else if (op < 66 && m[i].writable) {
            size_t off = (rng() % PAGES) * PG, len = (1 + rng() % 6) * PG;
            if (len > size - off)
                len = size - off;
            cr_assert_eq(mmk_region_prepare_write(m[i].r, off, len), 0);
        } else if (op < 72 && m[i].writable) {
            int src = (int)(rng() % VIEWS);
            if (m[src].r) {
                cr_assert_eq(mmk_region_restore(m[i].r, m[src].r), 0);
                memcpy(m[i].ref, m[src].ref, size);
            }
        } else if (op < 80) {
            cr_assert_eq(mmk_region_destroy(m[i].r), 0);
            m[i].r = NULL;
            free(m[i].ref);
            m[i].ref = NULL;
        } else if (op < 84) {
            cr_assert_eq(mmk_region_read(m[i].r, 0, buf, size), 0);
            cr_assert_eq(memcmp(buf, m[i].ref, size), 0, "step %d view %d (read)", step, i);
        }
        /* After every step: a live view's counts against the kernel. */
        for (int k = 0; k < VIEWS; k++) {
            int j = (i + k) % VIEWS;
            if (m[j].r) {
                check_counts(m[j].r, "model", step);
                break;
            }
        }
    }
    for (int i = 0; i < VIEWS; i++) {
        if (!m[i].r)
            continue;
        const unsigned char *b = mmk_region_base(m[i].r);
        cr_assert_eq(memcmp(b, m[i].ref, size), 0, "view %d at the end", i);
        check_counts(m[i].r, "model end", steps);
        cr_assert_eq(mmk_region_destroy(m[i].r), 0);
        free(m[i].ref);
    }
    free(buf);
}

Test(region_engine, model_never_undercounts_default_budget, .init = setup, .timeout = 300)
{
    model_counts(0x9e3779b97f4a7c15ull, 1500, 0);
}

Test(region_engine, model_never_undercounts_budget_32_evicts, .init = setup, .timeout = 300)
{
    unsigned long cal = mmk__engine_calibrations();
    model_counts(12345, 1500, 32);
    /* The budget was small enough that the kernel had to be asked. */
    cr_assert_gt(mmk__engine_calibrations(), cal);
}

Test(region_engine, model_never_undercounts_text_fallback, .init = setup, .timeout = 300)
{
    mmk_region *r = mmk_region_create(PG, 0); /* sets the engine up */
    mmk_region_destroy(r);
    mmk__engine_force_text(1);
    unsigned long cal = mmk__engine_calibrations();
    model_counts(777, 1000, 24);
    cr_assert_gt(mmk__engine_calibrations(), cal);
}

Test(region_engine, model_never_undercounts_random_seed_and_budget, .init = setup,
     .timeout = 300)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    size_t budget = 16 + (size_t)(seed % 185);
    fprintf(stderr, "test_region_engine: random model uses seed %llu, budget %zu\n",
            (unsigned long long)seed, budget);
    model_counts(seed | 1, 1500, budget);
}

/* Both ways of asking the kernel agree with each other and with the text. */
Test(region_engine, kernel_count_query_and_text_agree, .init = setup)
{
    mmk_region *r = mmk_region_create(256 * PG, 0);
    char *p = mmk_region_base(r);
    for (size_t i = 0; i < 256; i += 3)
        p[i * PG] = 1;
    mmk_region *s = mmk_region_snapshot(r, 0);
    for (size_t i = 0; i < 256; i += 7)
        p[i * PG] = 2;
    char *base;
    size_t len;
    quiesce();
    mmk__engine_space_range(&base, &len);
    mmk__vm_lock();
    long a = mmk__engine_kernel_count((uintptr_t)base, (uintptr_t)base + len);
    mmk__vm_unlock();
    mmk__engine_force_text(1);
    mmk__vm_lock();
    long b = mmk__engine_kernel_count((uintptr_t)base, (uintptr_t)base + len);
    mmk__vm_unlock();
    mmk__engine_force_text(0);
    cr_assert_gt(a, 10);
    cr_assert_eq(a, b);
    cr_assert_eq((size_t)a, space_mappings());
    mmk_region_destroy(s);
    mmk_region_destroy(r);
}

/* ---- never-written pages, read by pointer in random order --------------------- */

Test(region_engine, zero_pages_read_in_random_order_stay_counted, .init = setup, .timeout = 120)
{
    size_t pages = 8192;
    cr_assert_eq(mmk_region_set_budget(200), 0);
    mmk_region *r = mmk_region_create(pages * PG, 0);
    mmk_region *other = mmk_region_create(pages * PG, 0);
    const volatile char *p = mmk_region_base(r), *q = mmk_region_base(other);
    rng_state = 4711;
    for (int k = 0; k < 6000; k++) {
        size_t i = rng() % pages;
        cr_assert_eq(p[i * PG + rng() % PG], 0);
        cr_assert_eq(q[(rng() % pages) * PG], 0);
        if (k % 100 == 0)
            check_counts(r, "zero reads", k);
    }
    check_counts(r, "zero reads", 6000);
    check_counts(other, "zero reads", 6000);
    mmk_region_destroy(other);
    mmk_region_destroy(r);
}

/* ---- budgets at every edge ---------------------------------------------------- */

static size_t max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long long x = 65530;
    if (f) {
        if (fscanf(f, "%llu", &x) != 1)
            x = 65530;
        fclose(f);
    }
    return (size_t)x;
}

Test(region_engine, budget_edges, .init = setup)
{
    size_t max = max_map_count();
    mmk_region *r = mmk_region_create(16 * PG, 0);
    char *p = mmk_region_base(r);
    p[0] = 1;
    size_t def = stats_of(r).budget;
    cr_assert_eq(def, max / 2);
    /* Refused, and the budget stays what it was. */
    size_t bad[] = { 1, 2, 15, max + 1, (size_t)LONG_MAX, (size_t)LONG_MAX + 1, SIZE_MAX };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        cr_assert_eq(mmk_region_set_budget(bad[k]), -EINVAL, "budget %zu", bad[k]);
        cr_assert_eq(stats_of(r).budget, def, "budget %zu changed it", bad[k]);
    }
    /* Accepted, and kept. */
    size_t good[] = { 16, 64, 100, max };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        cr_assert_eq(mmk_region_set_budget(good[k]), 0, "budget %zu", good[k]);
        cr_assert_eq(stats_of(r).budget, good[k]);
        /* Writes still work under it. */
        for (size_t i = 0; i < 16; i++)
            p[i * PG] = (char)k;
        check_counts(r, "budget", (long)good[k]);
    }
    cr_assert_eq(mmk_region_set_budget(0), 0);
    cr_assert_eq(stats_of(r).budget, def);
    for (size_t i = 0; i < 16; i++)
        cr_assert_eq(p[i * PG], 3);
    mmk_region_destroy(r);
}

Test(region_engine, budget_16_holds_scattered_writes, .init = setup, .timeout = 120)
{
    cr_assert_eq(mmk_region_set_budget(16), 0);
    size_t pages = 4096;
    mmk_region *r = mmk_region_create(pages * PG, 0);
    char *p = mmk_region_base(r);
    memset(p, 1, pages * PG);
    mmk_region *s = mmk_region_snapshot(r, 0);
    rng_state = 99;
    for (int k = 0; k < 3000; k++) {
        p[(rng() % pages) * PG] = 2;
        if (k % 50 == 0)
            check_counts(r, "budget 16", k);
    }
    const char *q = mmk_region_base(s);
    for (size_t i = 0; i < pages; i += 17)
        cr_assert_eq(q[i * PG], 1);
    check_counts(s, "budget 16", 3000);
    mmk_region_destroy(s);
    mmk_region_destroy(r);
}

/* ---- small budgets under snapshot churn: no plain store may die ------------- */

/* Eight 64 MiB regions; each round: prepare_write all, a store in every
 * page's first word, a snapshot (a long run: page tables moved to scratch
 * ranges), destroy the snapshot. */
static void churn_under_budget(size_t budget)
{
    enum { N = 8, ROUNDS = 4 };
    size_t size = (size_t)64 << 20, pages = size / PG;
    cr_assert_eq(mmk_region_set_budget(budget), 0);
    mmk_region *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = mmk_region_create(size, 0);
        cr_assert_not_null(r[i]);
    }
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            cr_assert_eq(mmk_region_prepare_write(r[i], 0, size), 0, "round %d region %d", round,
                         i);
            uint64_t *w = mmk_region_base(r[i]);
            for (size_t k = 0; k < pages; k += 16)
                w[k * (PG / 8)] = (uint64_t)round * 1000 + (uint64_t)i;
            mmk_region *s = mmk_region_snapshot(r[i], 0);
            cr_assert_not_null(s);
            /* A plain store right after the snapshot, on every 128th page. */
            for (size_t k = 0; k < pages; k += 128)
                w[k * (PG / 8) + 1] = (uint64_t)round;
            cr_assert_eq(((const uint64_t *)mmk_region_base(s))[0],
                         (uint64_t)round * 1000 + (uint64_t)i);
            check_counts(r[i], "churn", round * N + i);
            cr_assert_eq(mmk_region_destroy(s), 0);
        }
    }
    for (int i = 0; i < N; i++) {
        const uint64_t *w = mmk_region_base(r[i]);
        cr_assert_eq(w[0], (uint64_t)(ROUNDS - 1) * 1000 + (uint64_t)i);
        cr_assert_eq(w[1], (uint64_t)(ROUNDS - 1));
        cr_assert_eq(mmk_region_destroy(r[i]), 0);
    }
}

Test(region_engine, churn_8x64mib_under_budget_16, .init = setup, .timeout = 300)
{
    churn_under_budget(16);
}

Test(region_engine, churn_8x64mib_under_budget_64, .init = setup, .timeout = 300)
{
    churn_under_budget(64);
}

Test(region_engine, churn_8x64mib_under_budget_100, .init = setup, .timeout = 300)
{
    churn_under_budget(100);
}

/* ---- pool reuse and memory given back ----------------------------------------- */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

Test(region_engine, pool_pages_are_reused_across_create_prepare_destroy, .init = setup,
     .timeout = 300)
{
    size_t size = (size_t)512 << 20;
    uint32_t top[5], file[5];
    long rss[5];
    for (int cycle = 0; cycle < 5; cycle++) {
        mmk_region *r = mmk_region_create(size, 0);
        cr_assert_not_null(r);
        /* Half by prepare_write (runs of 16384 pages), a quarter by stores
         * (first writes take 256-page runs). */
        cr_assert_eq(mmk_region_prepare_write(r, 0, size / 2), 0, "cycle %d", cycle);
        char *p = mmk_region_base(r);
        for (size_t off = size / 2; off < size / 2 + size / 4; off += 256 * PG)
            p[off] = 1;
        mmk_region *s = mmk_region_snapshot(r, 0);
        p[0] = 2; /* one copy-on-write page */
        cr_assert_eq(mmk_region_destroy(s), 0);
        cr_assert_eq(mmk_region_destroy(r), 0);
        mmk_region *probe = mmk_region_create(PG, 0);
        cr_assert_eq(stats_of(probe).pool_pages, 0);
        cr_assert_eq(stats_of(probe).nodes, 0);
        mmk_region_destroy(probe);
        mmk__pool_extent(&top[cycle], &file[cycle]);
        rss[cycle] = rss_kib();
        fprintf(stderr, "pool cycle %d: top %u pages, file %u pages, RSS %ld KiB\n", cycle,
                top[cycle], file[cycle], rss[cycle]);
    }
    for (int cycle = 1; cycle < 5; cycle++) {
        cr_assert_leq(top[cycle], top[0], "cycle %d: pool top grew", cycle);
        cr_assert_leq(file[cycle], file[0], "cycle %d: pool file grew", cycle);
    }
    /* Nothing is alive: the bookkeeping behind 512 MiB of pool pages
     * (refcounts 512 KiB, nodes 2 MiB) went back; RSS does not creep up. */
    cr_assert_leq(rss[4], rss[1] + 2048, "RSS grew from %ld to %ld KiB", rss[1], rss[4]);
    cr_assert_leq(top[4], 2, "nothing alive, yet the top is %u", top[4]);
}

Test(region_engine, freed_runs_serve_multi_page_allocations, .init = setup, .timeout = 120)
{
    size_t size = (size_t)256 << 20;
    mmk_region *keep = mmk_region_create(PG, 0);
    *(char *)mmk_region_base(keep) = 1; /* pins one page low in the pool */
    mmk_region *a = mmk_region_create(size, 0);
    cr_assert_eq(mmk_region_prepare_write(a, 0, size), 0);
    mmk_region *pin = mmk_region_create(PG, 0);
    *(char *)mmk_region_base(pin) = 1; /* a page above a's: the top cannot come down */
    uint32_t top0, file0;
    mmk__pool_extent(&top0, &file0);
    cr_assert_eq(mmk_region_destroy(a), 0);
    /* a's pages are free in the middle of the pool: the next regions take them. */
    for (int k = 0; k < 3; k++) {
        mmk_region *b = mmk_region_create(size, 0);
        cr_assert_eq(mmk_region_prepare_write(b, 0, size / 2), 0);
        char *p = mmk_region_base(b);
        for (size_t off = size / 2; off < size / 2 + size / 4; off += 256 * PG)
            p[off] = 1;
        uint32_t top, file;
        mmk__pool_extent(&top, &file);
        cr_assert_eq(top, top0, "round %d: the pool grew from %u to %u pages", k, top0, top);
        cr_assert_eq(mmk_region_destroy(b), 0);
    }
    mmk_region_destroy(pin);
    mmk_region_destroy(keep);
}

/* ---- one named test per defect ------------------------------------------------ */

/* A failed pwrite in the copy path used to fall back to memcpy through the
 * pool window (SIGBUS under the engine lock on a full tmpfs). */
Test(region_engine, regression_copy_error_is_returned_not_memcpyd, .init = setup)
{
    mmk_region *r = mmk_region_create(8 * PG, 0);
    char *p = mmk_region_base(r);
    memset(p, 'a', 8 * PG);
    mmk_region *s = mmk_region_snapshot(r, 0);
    cr_assert_eq(mmk__sys_inject("write", 1, ENOSPC), 0);
    cr_assert_eq(mmk_region_prepare_write(r, 0, 8 * PG), -ENOSPC);
    mmk__sys_inject("write", 0, 0);
    struct mmk_region_stats st = stats_of(r);
    cr_assert_eq(st.private_pages, 0, "a failed prepare_write changed the table");
    cr_assert_eq(p[0], 'a');
    p[0] = 'b'; /* the next write works */
    cr_assert_eq(*(const char *)mmk_region_base(s), 'a');
    mmk_region_destroy(s);
    mmk_region_destroy(r);
}

/* The same failure in a write fault: the fault fails cleanly (one line, then
 * SIGSEGV as for any fault mmkit cannot serve), not SIGBUS in the engine. */
Test(region_engine, regression_copy_error_in_fault_fails_cleanly, .init = setup,
     .signal = SIGSEGV)
{
    mmk_region *r = mmk_region_create(8 * PG, 0);
    char *p = mmk_region_base(r);
    memset(p, 'a', 8 * PG);
    mmk_region *s = mmk_region_snapshot(r, 0);
    (void)s;
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    mmk__sys_inject("write", 1, ENOSPC);
    *(volatile char *)(p + 3 * PG) = 'b';
    cr_assert_fail("the store went through");
}

/* In a child of fork(), set_budget and base used to succeed. */
Test(region_engine, regression_fork_child_budget_and_base_fail, .init = setup)
{
    mmk_region *r = mmk_region_create(4 * PG, 0);
    cr_assert_not_null(mmk_region_base(r));
    mmk_region *s = mmk_region_snapshot(r, 0); /* never materialized */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (mmk_region_set_budget(100) != -MMK_ESTATE)
            _exit(10);
        if (mmk_region_set_budget(0) != -MMK_ESTATE)
            _exit(11);
        errno = 0;
        if (mmk_region_base(r) != NULL || errno != MMK_ESTATE)
            _exit(12);
        errno = 0;
        if (mmk_region_base(s) != NULL || errno != MMK_ESTATE)
            _exit(13);
        struct mmk_region_stats st;
        if (mmk_region_stats(r, &st) != -MMK_ESTATE)
            _exit(14);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child died");
    cr_assert_eq(WEXITSTATUS(status), 0, "child check %d failed", WEXITSTATUS(status));
    cr_assert_eq(mmk_region_set_budget(100), 0);
    cr_assert_eq(mmk_region_set_budget(0), 0);
    mmk_region_destroy(s);
    mmk_region_destroy(r);
}

/* mmk_region_restore's source is written (its dirty pages are protected),
 * so it is no longer declared const; restoring from a source that other
 * code keeps writing still gives a point-in-time copy. */
Test(region_engine, regression_restore_protects_its_source, .init = setup)
{
    mmk_region *src = mmk_region_create(4 * PG, 0);
    mmk_region *dst = mmk_region_create(4 * PG, 0);
    char *p = mmk_region_base(src);
    strcpy(p, "before");
    cr_assert_eq(mmk_region_restore(dst, src), 0);
    strcpy(p, "after"); /* faults: the page is shared with dst now */
    cr_assert_str_eq((const char *)mmk_region_base(dst), "before");
    struct mmk_region_stats st = stats_of(src);
    cr_assert_eq(st.private_pages, 1);
    mmk_region_destroy(dst);
    mmk_region_destroy(src);
}

/* SIZE_MAX used to be stored, compare as -1, unmap every view and make the
 * next store die. */
Test(region_engine, regression_budget_size_max_is_refused_and_stores_work, .init = setup)
{
    mmk_region *r = mmk_region_create(4 * PG, 0);
    char *p = mmk_region_base(r);
    p[0] = 1;
    cr_assert_eq(mmk_region_set_budget(SIZE_MAX), -EINVAL);
    cr_assert_eq(mmk_region_set_budget((size_t)LONG_MAX + 1), -EINVAL);
    p[PG] = 2;
    mmk_region *s = mmk_region_snapshot(r, 0);
    p[0] = 3;
    cr_assert_eq(((const char *)mmk_region_base(s))[0], 1);
    cr_assert_eq(p[PG], 2);
    mmk_region_destroy(s);
    mmk_region_destroy(r);
}

/* A budget up to vm.max_map_count is accepted, but the rest of the program
 * has mappings too: when the kernel refuses a mapping for its own limit
 * (ENOMEM, here injected), other views are unmapped and the store goes on. */
Test(region_engine, regression_kernel_map_limit_does_not_kill_a_store, .init = setup)
{
    mmk_region *other = mmk_region_create(64 * PG, 0);
    char *o = mmk_region_base(other);
    for (size_t i = 0; i < 64; i += 2)
        o[i * PG] = 'o'; /* mapped, several mappings */
    mmk_region *r = mmk_region_create(64 * PG, 0);
    char *p = mmk_region_base(r);
    cr_assert_eq(mmk__sys_inject("mmap", 1, ENOMEM), 0);
    p[5 * PG] = 'x'; /* zero fill: one mmap, refused once */
    mmk__sys_inject("mmap", 0, 0);
    cr_assert_eq(p[5 * PG], 'x');
    for (size_t i = 0; i < 64; i += 2)
        cr_assert_eq(o[i * PG], 'o');
    check_counts(r, "map limit", 0);
    mmk_region_destroy(r);
    mmk_region_destroy(other);
}

/* ---- write-protect methods (protect.c) ------------------------------------------- */

/* Every method, forced for runs of any length: a snapshot keeps the bytes of
 * its moment, the live view keeps working, and the count never drops below
 * the kernel's. */
Test(region_engine, every_protect_method_keeps_snapshots_and_counts, .init = setup,
     .timeout = 120)
{
    for (int m = 0; m < MMK__PROTECT_METHODS; m++) {
        mmk__protect_force(m);
        cr_assert_eq(mmk__protect_method(), m);
        size_t n = 2048;
        mmk_region *r = mmk_region_create(n * PG, 0);
        cr_assert_not_null(r);
        char *p = mmk_region_base(r);
        for (size_t i = 0; i < n; i++)
            p[i * PG] = (char)(i * 7 + m);
        mmk_region *s = mmk_region_snapshot(r, 0);
        cr_assert_not_null(s);
        for (size_t i = 0; i < n; i += 5)
            p[i * PG] = 'x';
        mmk_region *s2 = mmk_region_snapshot(r, 0);
        cr_assert_not_null(s2);
        for (size_t i = 0; i < n; i += 3)
            p[i * PG] = 'y';
        const char *q = mmk_region_base(s), *q2 = mmk_region_base(s2);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(q[i * PG], (char)(i * 7 + m), "method %s page %zu",
                         mmk__protect_name(m), i);
            cr_assert_eq(q2[i * PG], i % 5 == 0 ? 'x' : (char)(i * 7 + m));
            cr_assert_eq(p[i * PG], i % 3 == 0 ? 'y' : i % 5 == 0 ? 'x' : (char)(i * 7 + m));
        }
        struct mmk_region_stats st = stats_of(r);
        cr_assert_geq((long)st.total_mappings, (long)space_mappings(), "method %s",
                      mmk__protect_name(m));
        mmk_region_destroy(s2);
        mmk_region_destroy(s);
        mmk_region_destroy(r);
    }
    mmk__protect_force(-1);
}

/* Another thread's mapping lands in the hole a move leaves: it is never
 * destroyed, by that snapshot, later writes and faults, or destroy. */
static char *foreign;
static size_t foreign_len;

static void take_the_hole(void *addr, size_t len)
{
    /* A piece in the middle of the hole, as another thread's mmap would. */
    char *at = (char *)addr + (len / 2 & ~(PG - 1));
    foreign_len = 3 * PG;
    foreign = mmap(at, foreign_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (foreign != MAP_FAILED)
        memset(foreign, 0x77, foreign_len);
    mmk__protect_hole_hook = NULL;
}

Test(region_engine, a_mapping_placed_in_the_hole_of_a_move_survives, .init = setup,
     .timeout = 120)
{
    mmk__protect_force(MMK__PROTECT_MOVE);
    size_t n = 1024;
    mmk_region *r = mmk_region_create(n * PG, 0);
    char *p = mmk_region_base(r);
    for (size_t i = 0; i < n; i++)
        p[i * PG] = (char)i;
    mmk__protect_hole_hook = take_the_hole;
    mmk_region *s = mmk_region_snapshot(r, 0);
    cr_assert_not_null(s);
    cr_assert_null(mmk__protect_hole_hook, "the move path ran");
    cr_assert_neq(foreign, MAP_FAILED);
    cr_assert_geq(foreign, p);
    cr_assert_lt(foreign, p + n * PG);
    size_t f0 = (size_t)(foreign - p) / PG, f1 = f0 + foreign_len / PG;
    /* The other pages still work: read, write, snapshot. */
    for (size_t i = 0; i < n; i++) {
        if (i >= f0 && i < f1)
            continue;
        cr_assert_eq(p[i * PG], (char)i);
        p[i * PG] = 'w';
    }
    mmk_region *s2 = mmk_region_snapshot(r, 0);
    cr_assert_not_null(s2);
    for (size_t i = 0; i < n; i++) {
        char a = 0, b = 0;
        cr_assert_eq(mmk_region_read(s, i * PG, &a, 1), 0);
        cr_assert_eq(a, (char)i); /* the snapshot's bytes, lost pages too */
        cr_assert_eq(mmk_region_read(s2, i * PG, &b, 1), 0);
        cr_assert_eq(b, i >= f0 && i < f1 ? (char)i : 'w');
    }
    for (size_t k = 0; k < foreign_len; k++)
        cr_assert_eq((unsigned char)foreign[k], 0x77);
    struct mmk_region_stats st = stats_of(r);
    cr_assert_geq((long)st.total_mappings, (long)space_mappings());
    mmk_region_destroy(s2);
    mmk_region_destroy(s);
    mmk_region_destroy(r);
    /* Destroyed, and new views made: the foreign mapping is still there. */
    mmk_region *r2 = mmk_region_create(4 * n * PG, 0);
    char *p2 = mmk_region_base(r2);
    memset(p2, 1, 4 * n * PG);
    for (size_t k = 0; k < foreign_len; k++)
        cr_assert_eq((unsigned char)foreign[k], 0x77);
    foreign[0] = 1; /* still writable: still the other mapping */
    mmk_region_destroy(r2);
    munmap(foreign, foreign_len);
    mmk__protect_force(-1);
}
