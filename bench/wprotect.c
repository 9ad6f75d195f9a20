/*
 * bench/wprotect.c - the kernel's ways to write-protect scattered pages and
 * to take a write fault on one, side by side in one run, so the choice of
 * docs/snapshot-speed.md (spans of mprotect, userfaultfd not used) can be
 * checked again on any machine.  No mmkit code is measured here.
 *
 *   1. Write-protect 1% of the pages of a 1 GiB memfd mapping (2,621 random
 *      pages), each made writable before the way the region engine's
 *      copy-before-write does it (an mprotect of the page inside a read-only
 *      mapping): one mprotect per page (anchor), one mprotect over the whole
 *      range (what a span does), and UFFDIO_WRITEPROTECT per page on a
 *      writable mapping registered for userfaultfd write-protect.
 *   2. A write to a protected page, resolved by a signal handler, 16,384
 *      pages: SIGSEGV + mprotect of the page (anchor), and the userfaultfd
 *      write-protect fault delivered as SIGBUS (UFFD_FEATURE_SIGBUS) +
 *      UFFDIO_WRITEPROTECT to lift it.
 *
 * Each sample runs in a child process of its own; rounds are interleaved and
 * each row is the median.  Rows userfaultfd cannot run print n/a.
 */
#define BENCH_RUNS 7
#include "bench.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#define SPACE ((size_t)1 << 30)
#define SCATTER 2621
#define FAULT_PAGES 16384

static size_t pg;
static int ufd = -1;

static char *memfd_map(size_t len, int prot)
{
    int fd = memfd_create("bench-wprotect", 0);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
        return NULL;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return NULL;
    memset(m, 0x5a, len); /* resident */
    if (prot != (PROT_READ | PROT_WRITE) && mprotect(m, len, prot) != 0)
        return NULL;
    return m;
}

/* A userfaultfd in SIGBUS mode with shmem write-protect, and m registered
 * for write-protect.  0 or -1 (not available here). */
static int uffd_register(char *m, size_t len)
{
    ufd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (ufd < 0)
        return -1;
    struct uffdio_api api = { .api = UFFD_API,
                              .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_SIGBUS };
    struct uffdio_register reg = { .range = { (uintptr_t)m, len },
                                   .mode = UFFDIO_REGISTER_MODE_WP };
    if (ioctl(ufd, UFFDIO_API, &api) != 0 || ioctl(ufd, UFFDIO_REGISTER, &reg) != 0)
        return -1;
    return 0;
}

static int uffd_wp(char *p, size_t len, int on)
{
    struct uffdio_writeprotect wp = { .range = { (uintptr_t)p, len },
                                      .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
    return ioctl(ufd, UFFDIO_WRITEPROTECT, &wp);
}

/* SCATTER distinct random pages of SPACE (xorshift, seeded per sample). */
static void pick(size_t *pages, unsigned long seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
    size_t n = SPACE / pg, k = 0;
    static unsigned char taken[(SPACE >> 12) / 8];
    memset(taken, 0, sizeof taken);
    while (k < SCATTER) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t i = (size_t)(x % n);
        if (taken[i / 8] & (1u << (i % 8)))
            continue;
        taken[i / 8] |= (unsigned char)(1u << (i % 8));
        pages[k++] = i;
    }
}

/* ---- (1) protecting scattered pages; each case returns us per page -------- */

enum { S_EACH, S_ONE, S_UFFD, NSCATTER };

static int scatter_case(int which, void *out)
{
    double *us = out;
    static size_t pages[SCATTER];
    pick(pages, (unsigned long)getpid());
    int uffd = which == S_UFFD;
    char *m = memfd_map(SPACE, uffd ? PROT_READ | PROT_WRITE : PROT_READ);
    if (!m || (uffd && uffd_register(m, SPACE) != 0))
        return -1;
    for (size_t k = 0; k < SCATTER; k++) {
        char *p = m + pages[k] * pg;
        if (!uffd && mprotect(p, pg, PROT_READ | PROT_WRITE) != 0)
            return -1;
        p[0] = 1;
    }
    double t0 = bench_now();
    if (which == S_ONE) {
        if (mprotect(m, SPACE, PROT_READ) != 0)
            return -1;
    } else {
        for (size_t k = 0; k < SCATTER; k++) {
            char *p = m + pages[k] * pg;
            if (uffd ? uffd_wp(p, pg, 1) : mprotect(p, pg, PROT_READ))
                return -1;
        }
    }
    *us = (bench_now() - t0) * 1e6 / SCATTER;
    return 0;
}

/* ---- (2) the write fault --------------------------------------------------- */

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char *p = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(pg - 1));
    if (mprotect(p, pg, PROT_READ | PROT_WRITE) != 0)
        _exit(3);
}

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    char *p = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(pg - 1));
    if (uffd_wp(p, pg, 0) != 0)
        _exit(4);
}

enum { F_SEGV, F_UFFD, NFAULT };

static int fault_case(int which, void *out)
{
    double *us = out;
    size_t len = FAULT_PAGES * pg;
    int uffd = which == F_UFFD;
    char *m = memfd_map(len, uffd ? PROT_READ | PROT_WRITE : PROT_READ);
    if (!m)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = uffd ? on_bus : on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(uffd ? SIGBUS : SIGSEGV, &sa, NULL) != 0)
        return -1;
    if (uffd && (uffd_register(m, len) != 0 || uffd_wp(m, len, 1) != 0))
        return -1;
    double t0 = bench_now();
    for (size_t i = 0; i < FAULT_PAGES; i++)
        m[i * pg] = 2;
    *us = (bench_now() - t0) * 1e6 / FAULT_PAGES;
    return 0;
}

/* ---- rounds and tables ----------------------------------------------------- */

static double sc[NSCATTER][BENCH_RUNS], fa[NFAULT][BENCH_RUNS];
static int nsc[NSCATTER], nfa[NFAULT];

static double med(double *v, int n)
{
    return n ? bench_median(v, n) : NAN;
}

static void row(const char *name, double value, double anchor)
{
    if (isnan(value))
        printf("| %s | n/a | us | |\n", name);
    else
        bench_row(name, value, "us", isnan(anchor) ? 0 : anchor);
}

int main(void)
{
    pg = (size_t)sysconf(_SC_PAGESIZE);
    for (int r = 0; r < BENCH_RUNS; r++) {
        for (int c = 0; c < NSCATTER; c++) {
            double v;
            if (bench_in_child(scatter_case, c, &v, sizeof v) == 0)
                sc[c][nsc[c]++] = v;
        }
        for (int c = 0; c < NFAULT; c++) {
            double v;
            if (bench_in_child(fault_case, c, &v, sizeof v) == 0)
                fa[c][nfa[c]++] = v;
        }
    }
    printf("\nbench/wprotect: %d interleaved rounds, one child process per sample\n", BENCH_RUNS);
    double each = med(sc[S_EACH], nsc[S_EACH]);
    bench_header("wprotect-scattered", "write-protecting 1% of a 1 GiB memfd mapping, 2,621 "
                                       "random pages made writable one by one (us per page)");
    row("mprotect of each page (the page's own mapping, split off before)", each, NAN);
    row("one mprotect over the whole 1 GiB (a span; read-only mappings between skipped)",
        med(sc[S_ONE], nsc[S_ONE]), each);
    row("UFFDIO_WRITEPROTECT of each page (writable mapping registered for uffd-wp)",
        med(sc[S_UFFD], nsc[S_UFFD]), each);
    double segv = med(fa[F_SEGV], nfa[F_SEGV]);
    bench_header("wprotect-fault", "a write to a write-protected page, resolved by a signal "
                                   "handler, 16,384 pages (us per page)");
    row("SIGSEGV, handler mprotects the page read-write, retry", segv, NAN);
    row("userfaultfd write-protect fault as SIGBUS, handler lifts it, retry",
        med(fa[F_UFFD], nfa[F_UFFD]), segv);
    return nsc[S_EACH] && nfa[F_SEGV] ? 0 : 1;
}
