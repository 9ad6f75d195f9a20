/*
 * bench/snapshot.c - regions and snapshots (issue 5) against what the kernel
 * offers for the same jobs, side by side in one run:
 *
 *   1. Snapshot of a 1 GiB resident region against fork() of a process that
 *      holds 1 GiB of ordinary anonymous private memory (the fork anchor: the
 *      fork() call in the parent is timed, the child _exits at once and is
 *      reaped outside the timed part) and against memcpy of 1 GiB (into a
 *      destination faulted in beforehand: the cheapest a copy can be).  Two
 *      mmkit rows: the FIRST snapshot after the whole region was written,
 *      which must write-protect all of it, a REPEAT snapshot after only
 *      64 random pages were written since the previous one, and one after
 *      1% of the pages (2,621 single-page runs) were written at random.
 *   0. First: which write-protect method the engine picked (MMKIT_PROTECT
 *      forces one), whether userfaultfd is there and with which features,
 *      and the machine's floors (a bare system call, the SIGSEGV round trip,
 *      the kernel's copy-on-write fault), so runs on machines compare.
 *   2. The first write to a shared page, per page, over 16,384 pages (64 MiB):
 *      mmkit after a snapshot (pages written in address order, and in random
 *      order), the kernel's copy-on-write fault in a parent whose child of
 *      fork() is alive, and the first write to a MAP_PRIVATE mapping of a
 *      memfd whose pages are already mapped read-only (the kernel copies the
 *      file page); and the floor of any SIGSEGV-based scheme (fault, a handler
 *      that only mprotects the page, retry: no copy, no new mapping).
 *   3. mmk_region_prepare_write of the same 64 MiB after a snapshot, per page,
 *      against the kernel's per-page copy-on-write faults of (2); also with
 *      the first write to each page afterwards (minor faults may remain).
 *   4. mmk_region_restore of a 1 GiB region in which 1% of the pages changed
 *      since the snapshot, against memcpy of the whole 1 GiB.
 *   5. Scale: 100,000 snapshots of a 256 MiB region alive at once, one random
 *      page changed between consecutive snapshots, every 1,000th checked.
 *
 * Every sample of (1)-(4) runs in a child process of its own, which sets up
 * one case, measures it and sends the numbers back through a pipe: no case
 * sees another's memory, and at most about 2 GiB is held at a time.  Samples
 * are taken in interleaved rounds (each case once per round), so that a slow
 * stretch of the machine hits every case alike; each row is the median of
 * BENCH_RUNS samples.  (5) runs once, in a child of its own.
 *
 * Anonymous memory is used as the system gives it (transparent huge pages
 * are printed in the preamble; with "madvise" the anchors use 4 KiB pages,
 * like the pool).  Goals from the issue are printed in the case name with
 * PASS or MISS; a MISS is a finding, not a failure: the exit status is
 * non-zero only if a case could not run at all.
 */
#define BENCH_RUNS 7
#include "bench.h"
#include "mmkit.h"
#include "vm.h" /* sizeof(struct mmk__node), for the metadata count of (5) */

#include <dirent.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

#define BIG GiB              /* (1), (4): the large region */
#define DIRTY_PAGES 64       /* (1): pages written between repeat snapshots */
#define REPEATS 5            /* (1): repeat snapshots per sample (median) */
#define COW_PAGES 16384      /* (2), (3): 64 MiB */
#define RESTORE_PERCENT 1    /* (4) */
#define SCALE_SIZE (256 * MiB)
#define SCALE_SNAPS 100000
#define SCALE_CHECK_EVERY 1000
#define SCALE_POINTER_EVERY 10000

static size_t pg;

/* The engine's write-protect methods (src/protect.c, through the static
 * library): which one ran is printed first. */
void mmk__protect_configure(void);
int mmk__protect_method(void);
const char *mmk__protect_name(int method);

static void fail(const char *what, int err)
{
    fprintf(stderr, "bench/snapshot: %s: %s\n", what, mmk_strerror(err));
}

/* ---- random numbers (xorshift64*) --------------------------------------- */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* n distinct random pages out of npages, in random order (malloc'd). */
static size_t *distinct_pages(size_t npages, size_t n)
{
    size_t *out = malloc(n * sizeof *out);
    uint8_t *seen = calloc(npages, 1);
    if (!out || !seen) {
        free(out);
        free(seen);
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        size_t p;
        do
            p = rnd_below(npages);
        while (seen[p]);
        seen[p] = 1;
        out[k] = p;
    }
    free(seen);
    return out;
}

/* A permutation of [0, n) (malloc'd). */
static size_t *permutation(size_t n)
{
    size_t *out = malloc(n * sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd_below(i + 1), t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    return out;
}

static char *anon(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A live region of len bytes, every page written (resident, private). */
static mmk_region *full_region(size_t len, char **base)
{
    mmk_region *r = mmk_region_create(len, 0);
    if (!r) {
        fail("mmk_region_create", errno);
        return NULL;
    }
    *base = mmk_region_base(r);
    if (!*base) {
        fail("mmk_region_base", errno);
        return NULL;
    }
    memset(*base, 0x5a, len);
    return r;
}

/* One byte of the snapshot s at off, through mmk_region_read. */
static int snap_byte(const mmk_region *s, size_t off)
{
    unsigned char c;
    int e = mmk_region_read(s, off, &c, 1);
    if (e < 0) {
        fail("mmk_region_read", -e);
        return -1;
    }
    return c;
}

/* ---- the cases of (1)-(4); each fills v[] and returns 0, or -1 ---------- */

struct sample {
    double v[6];
};

/* (1) mmkit: first snapshot of 1 GiB fully written; then repeat snapshots
 * after DIRTY_PAGES random pages each.  v0 first ms, v1 repeat ms, v2 the
 * live view's mappings after the last repeat. */
static int case_snapshot(struct sample *s)
{
    char *b;
    mmk_region *r = full_region(BIG, &b);
    if (!r)
        return -1;
    double t0 = bench_now();
    mmk_region *first = mmk_region_snapshot(r, 0);
    double t1 = bench_now();
    if (!first) {
        fail("mmk_region_snapshot", errno);
        return -1;
    }
    s->v[0] = (t1 - t0) * 1e3;
    s->v[4] = mmk__protect_method(); /* after the first snapshot tried it */
    double rep[REPEATS];
    for (int k = 0; k < REPEATS; k++) {
        size_t *pages = distinct_pages(BIG / pg, DIRTY_PAGES);
        if (!pages)
            return -1;
        for (size_t i = 0; i < DIRTY_PAGES; i++)
            b[pages[i] * pg] = (char)(k + 1);
        free(pages);
        t0 = bench_now();
        mmk_region *again = mmk_region_snapshot(r, 0);
        t1 = bench_now();
        if (!again) {
            fail("mmk_region_snapshot (repeat)", errno);
            return -1;
        }
        rep[k] = (t1 - t0) * 1e3;
    }
    /* The first snapshot must still hold the bytes of the fill. */
    for (size_t off = 0; off < BIG; off += 4099 * pg)
        if (snap_byte(first, off) != 0x5a) {
            fprintf(stderr, "bench/snapshot: first snapshot changed at %zu\n", off);
            return -1;
        }
    struct mmk_region_stats st;
    if (mmk_region_stats(r, &st) == 0)
        s->v[2] = (double)st.mappings;
    s->v[1] = bench_median(rep, REPEATS);
    /* Then 1% of the pages, at random: scattered single-page runs. */
    size_t n1 = BIG / pg / 100;
    size_t *pages = distinct_pages(BIG / pg, n1);
    if (!pages)
        return -1;
    for (size_t i = 0; i < n1; i++)
        b[pages[i] * pg] = 9;
    free(pages);
    t0 = bench_now();
    mmk_region *one = mmk_region_snapshot(r, 0);
    t1 = bench_now();
    if (!one) {
        fail("mmk_region_snapshot (1%)", errno);
        return -1;
    }
    s->v[3] = (t1 - t0) * 1e3;
    return 0;
}

/* Floors: a bare system call (us). */
static int case_syscall(struct sample *s)
{
    const int n = 200000;
    double t0 = bench_now();
    for (int i = 0; i < n; i++)
        syscall(SYS_getppid);
    s->v[0] = (bench_now() - t0) * 1e6 / n;
    return 0;
}

/* (1) anchor: fork() of a process holding 1 GiB of anonymous memory. */
static int case_fork(struct sample *s)
{
    char *m = anon(BIG);
    if (!m)
        return -1;
    memset(m, 0x5a, BIG);
    double t0 = bench_now();
    pid_t pid = fork();
    double t1 = bench_now();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(0);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    s->v[0] = (t1 - t0) * 1e3;
    return 0;
}

/* (1), (4) reference: memcpy of 1 GiB into memory faulted in beforehand. */
static int case_memcpy(struct sample *s)
{
    char *src = anon(BIG), *dst = anon(BIG);
    if (!src || !dst)
        return -1;
    memset(src, 0x5a, BIG);
    memset(dst, 0xa5, BIG);
    double t0 = bench_now();
    memcpy(dst, src, BIG);
    double t1 = bench_now();
    if (dst[BIG - 1] != 0x5a)
        return -1;
    s->v[0] = (t1 - t0) * 1e3;
    return 0;
}

/* (2) mmkit: one byte into each of COW_PAGES pages after a snapshot.
 * v0 us per page, v1 the live view's mappings afterwards. */
static int cow_mmkit(struct sample *s, int random_order)
{
    char *b;
    mmk_region *r = full_region(COW_PAGES * pg, &b);
    if (!r)
        return -1;
    size_t *order = random_order ? permutation(COW_PAGES) : NULL;
    if (random_order && !order)
        return -1;
    mmk_region *snap = mmk_region_snapshot(r, 0);
    if (!snap) {
        fail("mmk_region_snapshot", errno);
        return -1;
    }
    double t0 = bench_now();
    if (order)
        for (size_t i = 0; i < COW_PAGES; i++)
            b[order[i] * pg] = 1;
    else
        for (size_t i = 0; i < COW_PAGES; i++)
            b[i * pg] = 1;
    double t1 = bench_now();
    if (snap_byte(snap, 0) != 0x5a || snap_byte(snap, (COW_PAGES - 1) * pg) != 0x5a)
        return -1;
    struct mmk_region_stats st;
    if (mmk_region_stats(r, &st) == 0)
        s->v[1] = (double)st.mappings;
    s->v[0] = (t1 - t0) * 1e6 / COW_PAGES;
    free(order);
    return 0;
}

static int case_cow_mmkit_seq(struct sample *s)
{
    return cow_mmkit(s, 0);
}

static int case_cow_mmkit_rand(struct sample *s)
{
    return cow_mmkit(s, 1);
}

/* (2) anchor: the kernel's copy-on-write fault, child of fork() alive. */
static int case_cow_fork(struct sample *s)
{
    char *m = anon(COW_PAGES * pg);
    int fd[2];
    if (!m || pipe(fd) != 0)
        return -1;
    memset(m, 0x5a, COW_PAGES * pg);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char c;
        close(fd[1]);
        ssize_t n = read(fd[0], &c, 1); /* until the parent closes the pipe */
        _exit(n < 0);
    }
    close(fd[0]);
    double t0 = bench_now();
    for (size_t i = 0; i < COW_PAGES; i++)
        m[i * pg] = 1;
    double t1 = bench_now();
    close(fd[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    s->v[0] = (t1 - t0) * 1e6 / COW_PAGES;
    return 0;
}

/* (2) reference: first write to a MAP_PRIVATE mapping of a memfd whose pages
 * are mapped read-only already (read once before): the kernel copies. */
static int case_cow_memfd(struct sample *s)
{
    size_t len = COW_PAGES * pg;
    int fd = memfd_create("bench-snapshot", 0);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
        return -1;
    char *sh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return -1;
    memset(sh, 0x5a, len);
    munmap(sh, len);
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return -1;
    volatile char sink = 0;
    for (size_t i = 0; i < COW_PAGES; i++)
        sink += m[i * pg];
    (void)sink;
    double t0 = bench_now();
    for (size_t i = 0; i < COW_PAGES; i++)
        m[i * pg] = 1;
    double t1 = bench_now();
    s->v[0] = (t1 - t0) * 1e6 / COW_PAGES;
    return 0;
}

/* (2) floor of any SIGSEGV-based scheme: fault, signal, a handler that only
 * mprotects the page read-write (no copy, no new mapping), return, retry. */
static void floor_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    char *page = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(pg - 1));
    if (mprotect(page, pg, PROT_READ | PROT_WRITE) != 0)
        _exit(3);
}

static int case_cow_floor(struct sample *s)
{
    char *m = anon(COW_PAGES * pg);
    if (!m)
        return -1;
    memset(m, 0x5a, COW_PAGES * pg);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = floor_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || mprotect(m, COW_PAGES * pg, PROT_READ) != 0)
        return -1;
    double t0 = bench_now();
    for (size_t i = 0; i < COW_PAGES; i++)
        m[i * pg] = 1;
    double t1 = bench_now();
    s->v[0] = (t1 - t0) * 1e6 / COW_PAGES;
    return 0;
}

/* (3) mmk_region_prepare_write of 64 MiB after a snapshot; v0 us per page. */
static int case_prepare(struct sample *s)
{
    char *b;
    size_t len = COW_PAGES * pg;
    mmk_region *r = full_region(len, &b);
    if (!r)
        return -1;
    mmk_region *snap = mmk_region_snapshot(r, 0);
    if (!snap) {
        fail("mmk_region_snapshot", errno);
        return -1;
    }
    double t0 = bench_now();
    int e = mmk_region_prepare_write(r, 0, len);
    double t1 = bench_now();
    if (e < 0) {
        fail("mmk_region_prepare_write", -e);
        return -1;
    }
    /* The range is private and writable now, the snapshot unaffected.  The
     * writes may still take minor faults (page-table entries not filled). */
    for (size_t i = 0; i < COW_PAGES; i++)
        b[i * pg] = 1;
    double t2 = bench_now();
    s->v[1] = (t2 - t1) * 1e6 / COW_PAGES;
    if (snap_byte(snap, 0) != 0x5a || snap_byte(snap, len - pg) != 0x5a)
        return -1;
    s->v[0] = (t1 - t0) * 1e6 / COW_PAGES;
    return 0;
}

/* (4) restore of 1 GiB after RESTORE_PERCENT% of its pages changed.
 * v0 ms, v1 us per changed page, v2 ms to read the changed pages again. */
static int case_restore(struct sample *s)
{
    char *b;
    mmk_region *r = full_region(BIG, &b);
    if (!r)
        return -1;
    mmk_region *snap = mmk_region_snapshot(r, 0);
    if (!snap) {
        fail("mmk_region_snapshot", errno);
        return -1;
    }
    size_t n = BIG / pg * RESTORE_PERCENT / 100;
    size_t *pages = distinct_pages(BIG / pg, n);
    if (!pages)
        return -1;
    for (size_t i = 0; i < n; i++)
        b[pages[i] * pg + 7] = 1;
    double t0 = bench_now();
    int e = mmk_region_restore(r, snap);
    double t1 = bench_now();
    if (e < 0) {
        fail("mmk_region_restore", -e);
        return -1;
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += b[pages[i] * pg + 7] != 0x5a;
    double t2 = bench_now();
    free(pages);
    if (bad) {
        fprintf(stderr, "bench/snapshot: %zu pages not restored\n", bad);
        return -1;
    }
    s->v[0] = (t1 - t0) * 1e3;
    s->v[1] = (t1 - t0) * 1e6 / (double)n;
    s->v[2] = (t2 - t1) * 1e3;
    return 0;
}

/* ---- running the cases ------------------------------------------------------ */

enum {
    C_FORK, C_SNAP, C_MEMCPY, C_COW_FORK, C_COW_SEQ, C_COW_RAND, C_COW_MEMFD, C_PREPARE,
    C_RESTORE, C_COW_FLOOR, C_SYSCALL, NCASES
};

static const struct {
    int (*fn)(struct sample *);
    const char *name;
} cases[NCASES] = {
    [C_FORK] = { case_fork, "fork 1 GiB" },
    [C_SNAP] = { case_snapshot, "snapshot 1 GiB" },
    [C_MEMCPY] = { case_memcpy, "memcpy 1 GiB" },
    [C_COW_FORK] = { case_cow_fork, "kernel copy-on-write after fork" },
    [C_COW_SEQ] = { case_cow_mmkit_seq, "mmkit write faults, address order" },
    [C_COW_RAND] = { case_cow_mmkit_rand, "mmkit write faults, random order" },
    [C_COW_MEMFD] = { case_cow_memfd, "MAP_PRIVATE memfd first writes" },
    [C_PREPARE] = { case_prepare, "prepare_write 64 MiB" },
    [C_RESTORE] = { case_restore, "restore 1 GiB, 1% changed" },
    [C_COW_FLOOR] = { case_cow_floor, "SIGSEGV + mprotect floor" },
    [C_SYSCALL] = { case_syscall, "bare system call" },
};

/* Run fn in a child process; 0 and *out, or -1. */
static int in_child(int (*fn)(struct sample *), unsigned long seed, struct sample *out)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        rng = 0x9e3779b97f4a7c15ull ^ (seed * 0x100000001b3ull);
        struct sample s = { { 0 } };
        if (fn(&s) != 0)
            _exit(2);
        ssize_t w = write(fd[1], &s, sizeof s);
        _exit(w == (ssize_t)sizeof s ? 0 : 1);
    }
    close(fd[1]);
    struct sample s;
    ssize_t n = read(fd[0], &s, sizeof s);
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof s || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFSIGNALED(st))
            fprintf(stderr, "bench/snapshot: child killed by signal %d\n", WTERMSIG(st));
        return -1;
    }
    *out = s;
    return 0;
}

static double samples[NCASES][6][BENCH_RUNS];
static int nvalid[NCASES];

/* Median of the valid samples of value k of case c (NAN if none). */
static double med(int c, int k)
{
    double v[BENCH_RUNS];
    int n = nvalid[c];
    if (n == 0)
        return NAN;
    memcpy(v, samples[c][k], sizeof v);
    return bench_median(v, n);
}

/* ---- printing --------------------------------------------------------------- */

/* A ratio row whose name carries the goal (ratio <= limit) and its verdict. */
static void goal_row(const char *name, double value, const char *unit, double anchor,
                     double limit, const char *goal)
{
    char buf[256];
    const char *verdict = isnan(value) || isnan(anchor) ? "n/a"
                          : value / anchor <= limit     ? "PASS"
                                                        : "MISS";
    snprintf(buf, sizeof buf, "%s [goal: %s -> %s]", name, goal, verdict);
    bench_row(buf, value, unit, anchor);
}

/* A row with no ratio. */
static void info_row(const char *name, double value, const char *unit)
{
    printf("| %s | %.3f | %s | |\n", name, value, unit);
    fflush(stdout);
}

static void print_preamble(void)
{
    char thp[128] = "?";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(thp, sizeof thp, f))
            strcpy(thp, "?");
        thp[strcspn(thp, "\n")] = 0;
        fclose(f);
    }
    printf("\nbench/snapshot: %d interleaved rounds, one child process per sample; "
           "transparent huge pages: %s\n", BENCH_RUNS, thp);
    /* userfaultfd: available unprivileged (user-mode faults only)? which
     * write-protect features? (mmkit does not use it: docs/snapshot-speed.md) */
    int ufd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (ufd < 0) {
        printf("userfaultfd: not available (%s)\n", strerror(errno));
    } else {
        struct uffdio_api api = { .api = UFFD_API, .features = 0 };
        if (ioctl(ufd, UFFDIO_API, &api) == 0)
            printf("userfaultfd: available; features 0x%llx: write-protect %s, shmem "
                   "write-protect %s, SIGBUS mode %s\n", (unsigned long long)api.features,
                   api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP ? "yes" : "no",
                   api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM ? "yes" : "no",
                   api.features & UFFD_FEATURE_SIGBUS ? "yes" : "no");
        close(ufd);
    }
}

static void print_tables(void)
{
    double fork_ms = med(C_FORK, 0), first = med(C_SNAP, 0), repeat = med(C_SNAP, 1);
    double copy = med(C_MEMCPY, 0);
    char name[160];

    double kcow0 = med(C_COW_FORK, 0);
    double method = med(C_SNAP, 4);
    printf("\nwrite-protect method of long runs (first snapshot): %s; short runs: mprotect%s\n",
           isnan(method) ? "?" : mmk__protect_name((int)method),
           getenv("MMKIT_PROTECT") ? " (forced by MMKIT_PROTECT)" : "");
    printf("floors: bare system call %.2f us; SIGSEGV round trip + mprotect %.2f us; "
           "kernel copy-on-write fault %.2f us\n", med(C_SYSCALL, 0), med(C_COW_FLOOR, 0), kcow0);

    bench_header("snapshot", "point-in-time copy of 1 GiB of resident memory (ms)");
    bench_row("fork() of a process holding 1 GiB of anonymous private memory", fork_ms, "ms", 0);
    goal_row("mmkit first snapshot of 1 GiB fully written (write-protects it all)", first, "ms",
             fork_ms, 0.5, "<= 0.50x fork");
    goal_row("mmkit repeat snapshot, 1% of the pages (2,621) written at random since",
             med(C_SNAP, 3), "ms", fork_ms, 0.5, "<= 0.50x fork");
    snprintf(name, sizeof name, "mmkit repeat snapshot, %d random pages written since",
             DIRTY_PAGES);
    goal_row(name, repeat, "ms", fork_ms, 0.05, "<= 0.05x fork");
    bench_row("memcpy of 1 GiB (destination faulted in)", copy, "ms", fork_ms);

    bench_header("snapshot-vs-copy", "the same snapshots against copying the bytes (ms)");
    bench_row("memcpy of 1 GiB (destination faulted in)", copy, "ms", 0);
    goal_row("mmkit first snapshot", first, "ms", copy, 0.01, "100x faster, <= 0.01x");
    goal_row("mmkit repeat snapshot", repeat, "ms", copy, 0.01, "100x faster, <= 0.01x");
    printf("\nlive view after the repeat snapshots: %.0f kernel mappings\n", med(C_SNAP, 2));

    double kcow = med(C_COW_FORK, 0);
    bench_header("snapshot-cow", "first write to a shared page, 16,384 pages of 4 KiB "
                                 "(us per page)");
    bench_row("kernel copy-on-write fault, child of fork() alive", kcow, "us", 0);
    goal_row("mmkit write fault after a snapshot, pages in address order", med(C_COW_SEQ, 0),
             "us", kcow, 1.5, "<= 1.5x kernel");
    goal_row("mmkit write fault after a snapshot, pages in random order", med(C_COW_RAND, 0),
             "us", kcow, 1.5, "<= 1.5x kernel");
    bench_row("kernel: first write to a MAP_PRIVATE memfd page mapped read-only",
              med(C_COW_MEMFD, 0), "us", kcow);
    bench_row("floor of a SIGSEGV design: fault + handler mprotects the page RW + retry, "
              "no copy", med(C_COW_FLOOR, 0), "us", kcow);
    printf("\nlive view mappings after the writes: %.0f (address order), %.0f (random order)\n",
           med(C_COW_SEQ, 1), med(C_COW_RAND, 1));

    bench_header("snapshot-prepare", "making 64 MiB private and writable after a snapshot "
                                     "(us per page)");
    bench_row("kernel copy-on-write fault, child of fork() alive", kcow, "us", 0);
    goal_row("mmk_region_prepare_write of 64 MiB", med(C_PREPARE, 0), "us", kcow, 0.2,
             "5x faster, <= 0.20x");
    /* What copying a page costs at all here: memcpy of 1 GiB into memory
     * already faulted in, per 4 KiB.  prepare_write must copy every page. */
    bench_row("floor: memcpy per 4 KiB page (the 1 GiB memcpy above), no allocation",
              copy * 1e3 / (double)((1ull << 30) / 4096), "us", kcow);
    bench_row("the same plus the first write to each page afterwards", med(C_PREPARE, 0) +
              med(C_PREPARE, 1), "us", kcow);

    bench_header("snapshot-restore", "1 GiB region, 1% of its pages (2,621) changed since "
                                     "the snapshot");
    bench_row("memcpy of 1 GiB (destination faulted in)", copy, "ms", 0);
    bench_row("mmk_region_restore(live, snapshot)", med(C_RESTORE, 0), "ms", copy);
    info_row("mmk_region_restore, per changed page", med(C_RESTORE, 1), "us");
    info_row("afterwards: first read of the 2,621 restored pages (refaults)",
             med(C_RESTORE, 2), "ms");
}

/* ---- (5) scale: 100,000 snapshots alive ------------------------------------- */

/* Bytes the pool memfd holds in memory (st_blocks), or -1 if not found. */
static long long pool_bytes(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long long bytes = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (!strstr(target, "memfd:mmkit-pool"))
            continue;
        struct stat st;
        if (fstat(atoi(e->d_name), &st) == 0)
            bytes = (long long)st.st_blocks * 512;
    }
    closedir(d);
    return bytes;
}

struct check {
    size_t snap;         /* the snapshot checked */
    size_t page;         /* the page written just before it */
    uint64_t value;      /* what was written there */
    size_t later_page;   /* a page written after it */
    uint64_t later_old;  /* that page's value when the snapshot was taken */
};

static double tsum(const double *v, size_t n)
{
    double t = 0;
    for (size_t i = 0; i < n; i++)
        t += v[i];
    return t;
}

static uint64_t word_at(const char *b, size_t page)
{
    uint64_t v;
    memcpy(&v, b + page * pg, sizeof v);
    return v;
}

static int scale(void)
{
    const size_t npages = SCALE_SIZE / pg;
    char *b;
    mmk_region *r = full_region(SCALE_SIZE, &b);
    if (!r)
        return -1;
    uint64_t *cur = malloc(npages * sizeof *cur);
    size_t *seq = malloc((SCALE_SNAPS + 1) * sizeof *seq);
    mmk_region **snaps = malloc(SCALE_SNAPS * sizeof *snaps);
    double *t_snap = malloc(SCALE_SNAPS * sizeof *t_snap);
    struct check *chk = calloc(SCALE_SNAPS / SCALE_CHECK_EVERY + 1, sizeof *chk);
    if (!cur || !seq || !snaps || !t_snap || !chk)
        return -1;
    for (size_t i = 0; i < npages; i++) {
        cur[i] = 0x1000000000ull + i;
        memcpy(b + i * pg, &cur[i], sizeof cur[i]);
    }
    for (size_t k = 0; k <= SCALE_SNAPS; k++)
        seq[k] = rnd_below(npages);

    struct mmk_region_stats st0, st;
    int e = mmk_region_stats(r, &st0);
    if (e < 0) {
        fail("mmk_region_stats", -e);
        return -1;
    }
    long long pool0 = pool_bytes();
    struct mallinfo2 mi0 = mallinfo2();
    size_t max_total = st0.total_mappings, max_live = st0.mappings, nchk = 0;
    double t_write = 0, t0 = bench_now();
    for (size_t k = 0; k < SCALE_SNAPS; k++) {
        size_t p = seq[k];
        uint64_t val = 0x2000000000ull + k;
        double w0 = bench_now();
        memcpy(b + p * pg, &val, sizeof val); /* the copy-on-write fault */
        double w1 = bench_now();
        cur[p] = val;
        snaps[k] = mmk_region_snapshot(r, 0);
        double w2 = bench_now();
        if (!snaps[k]) {
            fprintf(stderr, "bench/snapshot: snapshot %zu: %s\n", k, mmk_strerror(errno));
            return -1;
        }
        t_write += w1 - w0;
        t_snap[k] = w2 - w1;
        if (k % SCALE_CHECK_EVERY == 0) {
            chk[nchk++] = (struct check){ k, p, val, seq[k + 1], cur[seq[k + 1]] };
            if (mmk_region_stats(r, &st) == 0) {
                if (st.total_mappings > max_total)
                    max_total = st.total_mappings;
                if (st.mappings > max_live)
                    max_live = st.mappings;
            }
        }
    }
    double t_loop = bench_now() - t0;
    struct mallinfo2 mi1 = mallinfo2();
    e = mmk_region_stats(r, &st);
    if (e < 0) {
        fail("mmk_region_stats", -e);
        return -1;
    }
    if (st.total_mappings > max_total)
        max_total = st.total_mappings;
    long long pool1 = pool_bytes();

    /* Every 1,000th snapshot: the page written just before it holds what was
     * written, a page written after it still holds its old value; every
     * 10,000th also through its pointer (which maps it on demand). */
    size_t bad = 0, checked = 0, by_pointer = 0;
    for (size_t c = 0; c < nchk; c++) {
        const mmk_region *s = snaps[chk[c].snap];
        uint64_t v = 0, w = 0;
        if (mmk_region_read(s, chk[c].page * pg, &v, sizeof v) < 0 ||
            mmk_region_read(s, chk[c].later_page * pg, &w, sizeof w) < 0)
            return -1;
        bad += (v != chk[c].value) + (w != chk[c].later_old);
        checked++;
        if (chk[c].snap % SCALE_POINTER_EVERY == 0) {
            const char *sb = mmk_region_base(snaps[chk[c].snap]);
            if (!sb)
                return -1;
            bad += (word_at(sb, chk[c].page) != chk[c].value) +
                   (word_at(sb, chk[c].later_page) != chk[c].later_old);
            by_pointer++;
        }
    }
    for (size_t i = 0; i < npages; i++) /* and the live region itself */
        bad += word_at(b, i) != cur[i];
    struct mmk_region_stats st_after_check;
    if (mmk_region_stats(r, &st_after_check) == 0 && st_after_check.total_mappings > max_total)
        max_total = st_after_check.total_mappings;

    double d0 = bench_now();
    for (size_t k = 0; k < SCALE_SNAPS; k++)
        if ((e = mmk_region_destroy(snaps[k])) < 0) {
            fail("mmk_region_destroy", -e);
            return -1;
        }
    double t_destroy = bench_now() - d0;
    struct mmk_region_stats st2;
    if (mmk_region_stats(r, &st2) < 0)
        return -1;
    long long pool2 = pool_bytes();

    double nodes_bytes = ((double)st.nodes - (double)st0.nodes) * sizeof(struct mmk__node);
    double malloc_bytes = (double)mi1.uordblks - (double)mi0.uordblks;
    double meta = (nodes_bytes + malloc_bytes) / SCALE_SNAPS;
    double snap_median = bench_median(t_snap, SCALE_SNAPS) * 1e6;

    bench_header("snapshot-scale", "100,000 snapshots of a 256 MiB region alive at once, "
                                   "one random page changed between consecutive snapshots");
    info_row("pool pages before the snapshots (the region, fully written)",
             (double)st0.pool_pages, "pages");
    info_row("pool pages with 100,000 snapshots alive", (double)st.pool_pages, "pages");
    info_row("pool pages added per snapshot (the changed page)",
             ((double)st.pool_pages - (double)st0.pool_pages) / SCALE_SNAPS, "pages");
    info_row("page-table nodes added per snapshot (x 136 bytes)",
             ((double)st.nodes - (double)st0.nodes) / SCALE_SNAPS, "nodes");
    info_row("malloc'd bytes per snapshot (mallinfo2 uordblks delta: the handles)",
             malloc_bytes / SCALE_SNAPS, "bytes");
    bench_row("goal: metadata beyond the changed pages, per snapshot", 1024, "bytes", 0);
    goal_row("metadata per snapshot, measured (nodes x 136 + malloc'd)", meta, "bytes", 1024,
             1.0, "<= 1 KiB");
    info_row("mmk_region_snapshot, median call", snap_median, "us");
    info_row("mmk_region_snapshot, mean call", tsum(t_snap, SCALE_SNAPS) * 1e6 / SCALE_SNAPS,
             "us");
    info_row("the write before it (copy-on-write fault), mean", t_write * 1e6 / SCALE_SNAPS,
             "us");
    info_row("whole loop (write + snapshot + bookkeeping), per snapshot",
             t_loop * 1e6 / SCALE_SNAPS, "us");
    bench_row("mapping budget (half of vm.max_map_count)", (double)st.budget, "mappings", 0);
    goal_row("most kernel mappings held by all views (sampled every 1,000)", (double)max_total,
             "mappings", (double)st.budget, 1.0, "under budget");
    info_row("most mappings of the live view (sampled)", (double)max_live, "mappings");
    info_row("mmk_region_destroy of all 100,000 snapshots, per snapshot",
             t_destroy * 1e6 / SCALE_SNAPS, "us");
    info_row("pool pages after destroying them (the live region's own)",
             (double)st2.pool_pages, "pages");
    info_row("pool memfd resident before the snapshots", (double)pool0 / MiB, "MiB");
    info_row("pool memfd resident with the snapshots alive", (double)pool1 / MiB, "MiB");
    info_row("pool memfd resident after destroying them", (double)pool2 / MiB, "MiB");

    /* The live region last: nothing may be left in the pool. */
    e = mmk_region_destroy(r);
    mmk_region *probe = mmk_region_create(pg, 0);
    struct mmk_region_stats st3;
    if (e < 0 || !probe || mmk_region_stats(probe, &st3) < 0)
        return -1;
    info_row("pool pages after destroying the live region too", (double)st3.pool_pages, "pages");
    info_row("pool memfd resident then", (double)pool_bytes() / MiB, "MiB");

    int back = st2.pool_pages == npages && st3.pool_pages == 0;
    printf("\nchecked %zu snapshots (every %d-th) by mmk_region_read, %zu of them also by "
           "pointer, and all %zu live pages: %s\n",
           checked, SCALE_CHECK_EVERY, by_pointer, npages,
           bad ? "MISMATCH" : "all values as written");
    printf("pool pages went back when the snapshots were destroyed: %s "
           "(%zu -> %zu -> %zu -> %zu)\n", back ? "yes" : "NO", st0.pool_pages, st.pool_pages,
           st2.pool_pages, st3.pool_pages);
    fflush(stdout);
    return bad ? -1 : 0;
}

static int case_scale(struct sample *s)
{
    (void)s;
    return scale();
}

int main(void)
{
    pg = (size_t)sysconf(_SC_PAGESIZE);
    mmk__protect_configure();
    print_preamble();
    int failures = 0;
    double t0 = bench_now();
    for (int round = 0; round < BENCH_RUNS; round++)
        for (int c = 0; c < NCASES; c++) {
            struct sample s;
            if (in_child(cases[c].fn, (unsigned long)(round * NCASES + c + 1), &s) < 0) {
                fprintf(stderr, "bench/snapshot: case '%s' failed in round %d\n",
                        cases[c].name, round);
                failures++;
                continue;
            }
            for (int k = 0; k < 6; k++)
                samples[c][k][nvalid[c]] = s.v[k];
            nvalid[c]++;
        }
    print_tables();
    struct sample s;
    if (in_child(case_scale, 0, &s) < 0) {
        fprintf(stderr, "bench/snapshot: the scale case failed\n");
        failures++;
    }
    fprintf(stderr, "rounds took %.1f s\n", bench_now() - t0);
    return failures ? 1 : 0;
}
