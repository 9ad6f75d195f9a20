/* test_arena.c - growable arenas: touch-to-grow, stable pointers, trim on
 * close, reopen, several processes and threads, disk full on both paths,
 * kill -9 after sync, read-only arenas and bad input. */
#include "mmkit.h"
#include "sys.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMPDIR_TAG "mmk-arena-test-XXXXXX"
#include "tmpdir.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* The whole file through read(2), as another tool would see it. */
static unsigned char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    size_t n = (size_t)file_size(path), got = 0;
    unsigned char *buf = malloc(n + 1);
    cr_assert_not_null(buf);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        cr_assert_gt(r, 0);
        got += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

/* Plain accesses through volatile, so the compiler keeps them in place. */
static void poke(void *p, unsigned char v)
{
    *(volatile unsigned char *)p = v;
}

static unsigned char peek(const void *p)
{
    return *(const volatile unsigned char *)p;
}

static size_t faults_of(const mmk_arena *a)
{
    struct mmk_arena_stats st;
    cr_assert_eq(mmk_arena_stats(a, &st), 0);
    return st.faults;
}

/* ---- bad input ------------------------------------------------------------- */

Test(arena, bad_input, .init = setup, .fini = teardown)
{
    errno = 0;
    cr_expect_null(mmk_arena_open(NULL, 0, 0));
    cr_expect_eq(errno, EINVAL, "reserve 0");
    cr_expect_null(mmk_arena_open(NULL, MiB, 1u << 20));
    cr_expect_eq(errno, EINVAL, "unknown flag");
    cr_expect_null(mmk_arena_open(NULL, SIZE_MAX, 0));
    cr_expect_eq(errno, ENOMEM, "SIZE_MAX reserve");
    cr_expect_null(mmk_arena_open(NULL, (size_t)1 << 62, 0));
    cr_expect_eq(errno, ENOMEM, "a 4 EiB reserve");
    cr_expect_null(mmk_arena_open(NULL, MiB, MMK_ARENA_RDONLY));
    cr_expect_eq(errno, EINVAL, "anonymous read-only");
    cr_expect_null(mmk_arena_open(path_of("x"), MiB, MMK_ARENA_EXCL));
    cr_expect_eq(errno, EINVAL, "EXCL without CREATE");
    cr_expect_null(mmk_arena_open(path_of("missing"), MiB, 0));
    cr_expect_eq(errno, ENOENT);
    cr_expect_null(mmk_arena_open(dir, MiB, MMK_ARENA_CREATE));
    cr_expect_eq(errno, EISDIR, "a directory, writable");
    cr_expect_null(mmk_arena_open(dir, MiB, MMK_ARENA_RDONLY));
    cr_expect_eq(errno, EISDIR, "a directory, read-only");

    mmk_arena *a = mmk_arena_open(path_of("target"), MiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_close(a), 0);
    char target[PATH_MAX + 64];
    snprintf(target, sizeof target, "%s", path_of("target"));
    cr_assert_eq(symlink(target, path_of("link")), 0);
    cr_expect_null(mmk_arena_open(path_of("link"), MiB, MMK_ARENA_NOFOLLOW));
    cr_expect_eq(errno, ELOOP, "symlink with NOFOLLOW");
    a = mmk_arena_open(path_of("link"), MiB, 0);
    cr_expect_not_null(a, "a symlink is followed without NOFOLLOW");
    mmk_arena_close(a);

    cr_expect_null(mmk_arena_open(path_of("target"), MiB, MMK_ARENA_CREATE | MMK_ARENA_EXCL));
    cr_expect_eq(errno, EEXIST);

    /* A file larger than the reservation. */
    int fd = open(path_of("big"), O_CREAT | O_RDWR, 0600);
    cr_assert_eq(ftruncate(fd, (off_t)(2 * MiB)), 0);
    close(fd);
    cr_expect_null(mmk_arena_open(path_of("big"), MiB, 0));
    cr_expect_eq(errno, EFBIG);

    cr_expect_eq(mmk_arena_close(NULL), -EINVAL);
    cr_expect_eq(mmk_arena_reserve(NULL, 1), -EINVAL);
    cr_expect_eq(mmk_arena_sync(NULL), -EINVAL);
    cr_expect_eq(mmk_fault_area_count(), 0, "failed opens leave no area behind");
}

Test(arena, alloc_contract, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(NULL, 4 * MiB, 0);
    cr_assert_not_null(a);
    char *base = mmk_arena_base(a);
    cr_expect_eq((uintptr_t)base % page, 0);
    cr_expect_eq(mmk_arena_size(a), 0);
    cr_expect_eq(mmk_arena_used(a), 0);

    char *p = mmk_arena_alloc(a, 3, 1);
    cr_assert_eq(p, base);
    char *q = mmk_arena_alloc(a, 8, 0);
    cr_expect_eq((uintptr_t)q % 16, 0, "align 0 means 16");
    cr_expect_eq(q, base + 16);
    char *r = mmk_arena_alloc(a, 1, 4096);
    cr_expect_eq(r, base + 4096);
    cr_expect_eq(mmk_arena_used(a), 4097);
    cr_expect_geq(mmk_arena_size(a), 4097, "alloc grows the file");

    errno = 0;
    cr_expect_null(mmk_arena_alloc(a, 0, 1));
    cr_expect_eq(errno, EINVAL);
    cr_expect_null(mmk_arena_alloc(a, 8, 3));
    cr_expect_eq(errno, EINVAL);
    cr_expect_null(mmk_arena_alloc(a, 4 * MiB, 1));
    cr_expect_eq(errno, ENOMEM, "the reservation is full");
    cr_expect_null(mmk_arena_alloc(a, SIZE_MAX, 1));
    cr_expect_eq(errno, ENOMEM);
    cr_expect_eq(mmk_arena_used(a), 4097, "failed allocs change nothing");
    cr_expect_eq(mmk_arena_reserve(a, 4 * MiB + 1), -ENOMEM);
    cr_expect_eq(mmk_arena_reserve(a, 4 * MiB), 0);
    cr_expect_eq(mmk_arena_size(a), 4 * MiB);
    cr_expect_eq(mmk_arena_set_growth(a, 2 * MiB, MiB), -EINVAL);
    cr_expect_eq(mmk_arena_set_growth(a, 0, 0), 0);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* ---- touch to grow ------------------------------------------------------- */

Test(arena, touch_grows_on_write_anonymous, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(NULL, GiB, 0);
    cr_assert_not_null(a);
    unsigned char *b = mmk_arena_base(a);
    poke(b + 10 * MiB + 3, 0x5a);
    cr_expect_eq(peek(b + 10 * MiB + 3), 0x5a);
    cr_expect_geq(mmk_arena_size(a), 10 * MiB + 4);
    cr_expect_geq(faults_of(a), 1);
    /* Plain stores count in anonymous arenas too (the header's rule; this
     * used to expect 0, the allocation pointer alone). */
    cr_expect_eq(mmk_arena_used(a), 10 * MiB + 4, "anonymous: the last non-zero byte counts");
    cr_expect_eq(mmk_arena_close(a), 0);
}

Test(arena, touch_grows_on_write_and_read_file, .init = setup, .fini = teardown)
{
    const char *path = path_of("grow");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    unsigned char *b = mmk_arena_base(a);
    cr_expect_eq(mmk_arena_size(a), 0);

    /* A read past the end grows the file and reads zero. */
    cr_expect_eq(peek(b + 5 * MiB), 0);
    size_t after_read = mmk_arena_size(a);
    cr_expect_geq(after_read, 5 * MiB + 1);
    cr_expect_geq(faults_of(a), 1);
    cr_expect_eq(mmk_arena_used(a), 0, "a read uses nothing");

    /* A write further still grows it again. */
    size_t f0 = faults_of(a);
    poke(b + 40 * MiB, 1);
    cr_expect_gt(mmk_arena_size(a), after_read);
    cr_expect_gt(faults_of(a), f0);
    cr_expect_eq(peek(b + 40 * MiB), 1);
    cr_expect_eq(mmk_arena_used(a), 40 * MiB + 1);
    cr_expect_geq((size_t)file_size(path), 40 * MiB + 1, "the file itself grew");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(40 * MiB + 1), "trimmed to the used size");
}

Test(arena, growth_is_geometric_and_settable, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(path_of("geo"), GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 64 * KiB, 4 * MiB), 0);
    unsigned char *b = mmk_arena_base(a);
    for (size_t off = 0; off < 64 * MiB; off += page)
        poke(b + off, 1);
    size_t f = faults_of(a);
    /* 64K,128K,...,4M (7 doublings reach 8 MiB) then 14 steps of 4 MiB. */
    cr_expect_leq(f, 24, "%zu growth faults for 64 MiB", f);
    cr_expect_geq(f, 15, "%zu growth faults for 64 MiB", f);
    cr_expect_leq(mmk_arena_size(a), 64 * MiB + 4 * MiB, "slack is at most one chunk");
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* ---- pointers stay put --------------------------------------------------- */

Test(arena, pointers_stable_across_growth, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(path_of("stable"), 4 * GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 64 * KiB, 64 * KiB), 0);
    char *base = mmk_arena_base(a);
    char *msg = mmk_arena_alloc(a, 32, 8);
    cr_assert_not_null(msg);
    strcpy(msg, "first words, never moved");
    char **slots = mmk_arena_alloc(a, 100 * sizeof(char *), 8);
    cr_assert_not_null(slots);
    for (int i = 0; i < 100; i++) {
        /* Each allocation grows the file; earlier pointers must survive. */
        slots[i] = mmk_arena_alloc(a, 300 * KiB, 64);
        cr_assert_not_null(slots[i]);
        memset(slots[i], 'a' + i % 26, 300 * KiB);
    }
    cr_expect_eq(mmk_arena_base(a), base);
    cr_expect_str_eq(msg, "first words, never moved");
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(slots[i][0], 'a' + i % 26);
        cr_assert_eq(slots[i][300 * KiB - 1], 'a' + i % 26);
    }
    cr_expect_geq(mmk_arena_size(a), 100 * 300 * KiB);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* ---- trim on close ---------------------------------------------------------- */

Test(arena, trim_keeps_bytes_in_pages_that_never_faulted, .init = setup, .fini = teardown)
{
    const char *path = path_of("trim");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 8 * MiB, 8 * MiB), 0);
    unsigned char *b = mmk_arena_base(a);
    poke(b, 'A'); /* one fault grows the file by 8 MiB */
    size_t f = faults_of(a);
    cr_assert_eq(f, 1);
    /* These pages are inside the grown chunk: no fault records them. */
    poke(b + 3 * MiB + 17, 'B');
    poke(b + 6 * MiB + 4095, 'C');
    cr_expect_eq(faults_of(a), f, "stores inside the chunk did not fault");
    cr_expect_eq(mmk_arena_used(a), 6 * MiB + 4096);
    cr_expect_eq(mmk_arena_close(a), 0);

    size_t n;
    unsigned char *buf = read_file(path, &n);
    cr_expect_eq(n, 6 * MiB + 4096, "trimmed to the last byte written, not the last fault");
    cr_expect_eq(buf[0], 'A');
    cr_expect_eq(buf[3 * MiB + 17], 'B');
    cr_expect_eq(buf[6 * MiB + 4095], 'C');
    cr_expect_eq(buf[1], 0);
    free(buf);
}

Test(arena, reopen_gives_same_bytes_and_used, .init = setup, .fini = teardown)
{
    const char *path = path_of("reopen");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    unsigned char *p = mmk_arena_alloc(a, 1000, 1);
    cr_assert_not_null(p);
    for (int i = 0; i < 990; i++)
        p[i] = (unsigned char)(i % 251 + 1);
    /* The last 10 allocated bytes stay zero: allocated, so they count. */
    cr_expect_eq(mmk_arena_used(a), 1000);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), 1000);

    a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 1000, "used survives a close, trailing zeros included");
    /* The file is extended to the end of its last page while open (stores
     * there cannot fault); this used to expect 1000. */
    cr_expect_eq(mmk_arena_size(a), page);
    p = mmk_arena_base(a);
    for (int i = 0; i < 990; i++)
        cr_assert_eq(p[i], (unsigned char)(i % 251 + 1));
    /* The allocation pointer continues where it was. */
    unsigned char *q = mmk_arena_alloc(a, 24, 8);
    cr_expect_eq(q, p + 1000);
    memset(q, 0xee, 24);
    poke(p + 2 * MiB, 7); /* and plain stores past it grow the file */
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(2 * MiB + 1));

    a = mmk_arena_open(path, GiB, MMK_ARENA_RDONLY);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 2 * MiB + 1);
    p = mmk_arena_base(a);
    cr_expect_eq(p[1000], 0xee);
    cr_expect_eq(p[2 * MiB], 7);
    cr_expect_eq(mmk_arena_close(a), 0);

    a = mmk_arena_open(path, GiB, MMK_ARENA_TRUNC);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 0, "TRUNC starts empty");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), 0);
}

Test(arena, file_written_elsewhere_counts_whole, .init = setup, .fini = teardown)
{
    const char *path = path_of("plain");
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    char zeros[100] = { 'z' };
    cr_assert_eq(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);
    mmk_arena *a = mmk_arena_open(path, MiB, 0);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 100, "a file mmkit did not write is used to its end");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), 100);
}

/* ---- several processes -------------------------------------------------------- */

#define PROC_SPAN (48 * MiB)

static unsigned char proc_byte(size_t pageno, int k)
{
    return (unsigned char)(1 + (pageno * 7 + (size_t)k) % 250);
}

Test(arena, two_processes_grow_the_same_file, .init = setup, .fini = teardown)
{
    const char *path = path_of("shared");
    int go[2];
    cr_assert_eq(pipe(go), 0);
    /* Growth faults per child.  Which child grows how much depends on the
     * scheduler (one may find the whole file grown by the other), so only
     * the sum is a promise. */
    size_t *faults = mmap(NULL, 2 * sizeof *faults, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(faults, MAP_FAILED);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        cr_assert_geq(kids[k], 0);
        if (kids[k] == 0) {
            mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
            if (!a)
                _exit(10);
            if (mmk_arena_set_growth(a, 64 * KiB, 256 * KiB) != 0)
                _exit(11);
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0) /* wait for the parent to close */
                _exit(12);
            unsigned char *b = mmk_arena_base(a);
            /* Both write every other page, so each keeps finding the file
             * grown by the other, and keeps growing it itself. */
            for (size_t pg = (size_t)k; pg < PROC_SPAN / page; pg += 2)
                memset(b + pg * page, proc_byte(pg, k), page);
            struct mmk_arena_stats st;
            mmk_arena_stats(a, &st);
            faults[k] = st.faults;
            if (mmk_arena_close(a) != 0)
                _exit(14);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]); /* both start */
    for (int k = 0; k < 2; k++) {
        int st;
        cr_assert_eq(waitpid(kids[k], &st, 0), kids[k]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", k, st);
    }
    cr_expect_gt(faults[0] + faults[1], 0, "no growth fault in either child");
    munmap(faults, 2 * sizeof *faults);
    cr_expect_geq(file_size(path), (off_t)PROC_SPAN);
    size_t n;
    unsigned char *buf = read_file(path, &n);
    size_t bad = 0;
    for (size_t pg = 0; pg < PROC_SPAN / page; pg++) {
        unsigned char want = proc_byte(pg, (int)(pg % 2));
        for (size_t i = 0; i < page; i += 512)
            bad += buf[pg * page + i] != want;
    }
    cr_expect_eq(bad, 0, "%zu samples lost: a grower shrank the file", bad);
    free(buf);
    /* The last closer trimmed unless both closed at once; a sole open and
     * close always trims exactly. */
    mmk_arena *a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), PROC_SPAN);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)PROC_SPAN);
}

struct behind_race {
    const char *path;
    mmk_arena *a, *b;
    atomic_size_t go;       /* the round the storing thread has started */
    atomic_size_t done;     /* the round the growing thread has finished */
};

/* Grows the file through a, one page further each round, as soon as the
 * test thread starts a round of storing into that page through b (which
 * waits a varying time first, so that some rounds grow the file just while
 * b's fault is on its way to the handler).  Round SIZE_MAX stops it. */
static void *behind_grower(void *arg)
{
    struct behind_race *r = arg;
    for (size_t i = 1;; i++) {
        size_t g;
        while ((g = atomic_load(&r->go)) != i && g != SIZE_MAX)
            ; /* spinning: the growth must follow the store closely */
        if (g == SIZE_MAX)
            return NULL;
        mmk_arena_reserve(r->a, i * page);
        atomic_store(&r->done, i);
    }
}

Test(arena, a_process_behind_just_retries, .init = setup, .fini = teardown)
{
    /* Two handles on one file in one process stand for two processes: the
     * second's cached size is behind after the first grows the file. */
    const char *path = path_of("behind");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    mmk_arena *b = mmk_arena_open(path, GiB, 0);
    cr_assert(a && b);
    cr_assert_eq(mmk_arena_reserve(a, 8 * MiB), 0);
    unsigned char *pb = mmk_arena_base(b);
    poke(pb + 5 * MiB, 9); /* no fault at all: the file is long enough */
    cr_expect_eq(faults_of(b), 0);
    cr_expect_eq(peek((unsigned char *)mmk_arena_base(a) + 5 * MiB), 9);
    cr_expect_eq(mmk_arena_size(b), 8 * MiB);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(8 * MiB), "no trim while b has the file open");
    cr_expect_eq(mmk_arena_close(b), 0);
    cr_expect_eq(file_size(path), (off_t)(5 * MiB + 1), "the last closer trims");

    /* The race proper: b's store faults, then a grows the file before b's
     * handler looks at it; the handler finds the file long enough and just
     * retries (a fault of b's that b did not grow for). */
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) < 2) {
        cr_log_warn("one CPU: the growth race is not run");
        return;
    }
    struct behind_race r = { .path = path_of("behind-race") };
    r.a = mmk_arena_open(r.path, 64 * MiB, MMK_ARENA_CREATE);
    r.b = mmk_arena_open(r.path, 64 * MiB, 0);
    cr_assert(r.a && r.b);
    cr_assert_eq(mmk_arena_set_growth(r.b, page, page), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, behind_grower, &r), 0);
    unsigned char *rb = mmk_arena_base(r.b);
    struct mmk_arena_stats st = { 0 };
    size_t pages = 64 * MiB / page, i;
    for (i = 0; i < pages; i++) {
        atomic_store(&r.go, i + 1);
        for (volatile unsigned spin = (unsigned)(i * 7919 % 4000); spin > 0; spin--)
            ;
        poke(rb + i * page, (unsigned char)(i % 251 + 1));
        while (atomic_load(&r.done) != i + 1)
            sched_yield(); /* not sleeping: the grower reacts at once */
        mmk_arena_stats(r.b, &st);
        if (st.faults > st.grows) {
            i++;
            break;
        }
    }
    atomic_store(&r.go, SIZE_MAX);
    pthread_join(t, NULL);
    cr_expect_gt(st.faults, st.grows, "the retry branch was reached (%zu faults, %zu grows, "
                 "%zu rounds)", st.faults, st.grows, i);
    size_t bad = 0;
    unsigned char *ra = mmk_arena_base(r.a);
    for (size_t j = 0; j < i; j++)
        bad += peek(ra + j * page) != (unsigned char)(j % 251 + 1);
    cr_expect_eq(bad, 0, "a retried store reaches the file");
    cr_expect_eq(mmk_arena_close(r.a), 0);
    cr_expect_eq(mmk_arena_close(r.b), 0);
}

/* ---- several threads ----------------------------------------------------------- */

#define NTHREADS 4
#define THREAD_SPAN (64 * MiB)
#define ALLOCS 2000

struct worker {
    mmk_arena *a;
    int id;
    pthread_barrier_t *start;
    unsigned char *allocs[ALLOCS];
};

/* Start NTHREADS workers on fn behind one barrier and join them; each must
 * return NULL. */
static void run_workers(mmk_arena *a, void *(*fn)(void *), struct worker *w)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NTHREADS);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].a = a;
        w[i].id = i;
        w[i].start = &start;
        cr_assert_eq(pthread_create(&t[i], NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_null(ret, "worker %d failed", i);
    }
    pthread_barrier_destroy(&start);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    unsigned char *b = mmk_arena_base(w->a);
    pthread_barrier_wait(w->start);
    /* Interleaved pages: all four threads fault at the growing end at once. */
    for (size_t pg = (size_t)w->id; pg < THREAD_SPAN / page; pg += NTHREADS) {
        memset(b + pg * page, w->id + 1, page);
        if (pg % 64 == (size_t)w->id) {
            unsigned char *p = mmk_arena_alloc(w->a, 48, 16);
            if (!p)
                return (void *)1;
            memset(p, 0x10 + w->id, 48);
            w->allocs[pg / 64] = p;
        }
    }
    return NULL;
}

Test(arena, four_threads_grow_concurrently, .init = setup, .fini = teardown)
{
    const char *path = path_of("threads");
    /* Allocations come from the start, pages are written from 16 MiB on. */
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 64 * KiB, 128 * KiB), 0);
    static struct worker w[NTHREADS];
    run_workers(a, worker_run, w);
    /* The allocations overlap the first pages the workers wrote: check the
     * pages only past them, and that no two allocations overlap. */
    size_t used_by_allocs = mmk_arena_used(a);
    unsigned char *b = mmk_arena_base(a);
    size_t first = (1 * MiB) / page, bad = 0;
    for (size_t pg = first; pg < THREAD_SPAN / page; pg++)
        for (size_t i = 0; i < page; i += 256)
            bad += b[pg * page + i] != (unsigned char)(pg % NTHREADS + 1);
    cr_expect_eq(bad, 0, "%zu samples lost to a racing growth", bad);
    cr_expect_eq(used_by_allocs, THREAD_SPAN, "used is the last byte written");
    struct mmk_arena_stats st;
    mmk_arena_stats(a, &st);
    cr_expect_gt(st.faults, 100, "many growth faults: %zu", st.faults);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)THREAD_SPAN);
}

static void *alloc_run(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < ALLOCS; i++) {
        unsigned char *p = mmk_arena_alloc(w->a, 1000 + (size_t)i % 3000, 8);
        if (!p)
            return (void *)1;
        memset(p, w->id + 1, 1000); /* a write may fault: growth by a store */
        w->allocs[i] = p;
    }
    return NULL;
}

Test(arena, four_threads_allocate_concurrently, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(path_of("allocs"), GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 64 * KiB, 64 * KiB), 0);
    static struct worker w[NTHREADS];
    run_workers(a, alloc_run, w);
    /* No allocation was handed out twice: every block still holds its
     * owner's bytes. */
    size_t bad = 0;
    for (int i = 0; i < NTHREADS; i++)
        for (int j = 0; j < ALLOCS; j++)
            for (size_t k = 0; k < 1000; k += 100)
                bad += w[i].allocs[j][k] != i + 1;
    cr_expect_eq(bad, 0);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* ---- disk full -------------------------------------------------------------------- */

static void limit_file_size(size_t bytes)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
    rl.rlim_cur = bytes;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

Test(arena, disk_full_explicit_calls_return_the_error, .init = setup, .fini = teardown)
{
    const char *path = path_of("full");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    limit_file_size(4 * MiB);
    unsigned char *p = mmk_arena_alloc(a, MiB + 5, 1);
    cr_assert_not_null(p);
    memset(p, 0x11, MiB + 5);
    size_t size = mmk_arena_size(a), used = mmk_arena_used(a);
    cr_assert_eq(used, MiB + 5);

    cr_expect_eq(mmk_arena_reserve(a, 8 * MiB), -EFBIG);
    cr_expect_eq(mmk_arena_size(a), size, "a failed reserve changes nothing");
    errno = 0;
    cr_expect_null(mmk_arena_alloc(a, 8 * MiB, 1));
    cr_expect_eq(errno, EFBIG);
    cr_expect_eq(mmk_arena_used(a), used, "a failed alloc changes nothing");
    cr_expect_eq(mmk_arena_size(a), size);

    /* An allocation whose chunk would pass the limit but which itself fits
     * still succeeds: growth falls back to the exact size. */
    cr_assert_eq(mmk_arena_set_growth(a, 8 * MiB, 8 * MiB), 0);
    unsigned char *q = mmk_arena_alloc(a, MiB, 1);
    cr_expect_not_null(q);
    cr_expect_leq(mmk_arena_size(a), 4 * MiB);

    /* Disk full proper, injected: the same contract. */
    mmk__sys_inject("fallocate", 100, ENOSPC);
    size = mmk_arena_size(a);
    used = mmk_arena_used(a);
    cr_expect_eq(mmk_arena_reserve(a, 4 * MiB), -ENOSPC);
    errno = 0;
    cr_expect_null(mmk_arena_alloc(a, 2 * MiB, 1));
    cr_expect_eq(errno, ENOSPC);
    cr_expect_eq(mmk_arena_size(a), size);
    cr_expect_eq(mmk_arena_used(a), used);
    mmk__sys_inject("fallocate", 0, 0);
    cr_expect_eq(mmk_arena_reserve(a, 4 * MiB), 0, "space is back: the call works");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(2 * MiB + 5));
}

/*
 * Run fn in a child with stderr on a pipe; return its wait status and what
 * it wrote to stderr.
 */
static int run_child(void (*fn)(const char *), const char *path, char *err, size_t errlen)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        fn(path);
        _exit(0);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while (n < errlen - 1 && (r = read(pfd[0], err + n, errlen - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(pfd[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return st;
}

static void store_past_rlimit(const char *path)
{
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    if (!a)
        _exit(3);
    unsigned char *b = mmk_arena_base(a);
    memset(b, 0x42, MiB); /* fine: under the limit */
    if (mmk_arena_sync(a) != 0)
        _exit(4);
    limit_file_size(2 * MiB);
    b[3 * MiB] = 1; /* cannot be backed: the process must end here */
    _exit(5);
}

static void expect_one_fatal_line(const char *err, const char *path, const char *name)
{
    char want[2 * PATH_MAX + 256];
    snprintf(want, sizeof want, "mmkit: arena %s: cannot extend the file to back offset %zu: %s (",
             path, 3 * MiB, name);
    cr_expect(strncmp(err, want, strlen(want)) == 0, "stderr was: %s", err);
    /* The fatal line, then only the frames of the faulting store. */
    for (const char *nl = strchr(err, '\n'); nl && nl[1]; nl = strchr(nl + 1, '\n'))
        cr_expect(strlen(nl + 1) < 5 || strncmp(nl + 1, "    #", 5) == 0,
                  "one line, then frames: %s", err);
}

Test(arena, disk_full_plain_store_ends_the_process, .init = setup, .fini = teardown)
{
    const char *path = path_of("store-efbig");
    char err[1024];
    int st = run_child(store_past_rlimit, path, err, sizeof err);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
    expect_one_fatal_line(err, path, "EFBIG");
    /* Nothing is corrupt: every byte stored before is there. */
    size_t n;
    unsigned char *buf = read_file(path, &n);
    cr_expect_geq(n, MiB);
    cr_expect_leq(n, 2 * MiB);
    size_t bad = 0;
    for (size_t i = 0; i < MiB; i++)
        bad += buf[i] != 0x42;
    cr_expect_eq(bad, 0);
    free(buf);
    mmk_arena *a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), MiB, "the dead process's slack is recognised");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)MiB);
}

static void store_on_full_disk(const char *path)
{
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    if (!a)
        _exit(3);
    unsigned char *b = mmk_arena_base(a);
    b[0] = 1;
    mmk__sys_inject("fallocate", 1000, ENOSPC);
    b[3 * MiB] = 1;
    _exit(5);
}

Test(arena, disk_full_enospc_plain_store_ends_the_process, .init = setup, .fini = teardown)
{
    const char *path = path_of("store-enospc");
    char err[1024];
    int st = run_child(store_on_full_disk, path, err, sizeof err);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
    expect_one_fatal_line(err, path, "ENOSPC");
}

static void store_into_anonymous_on_full_memory(const char *path)
{
    (void)path;
    mmk_arena *a = mmk_arena_open(NULL, GiB, 0);
    if (!a)
        _exit(3);
    mmk__sys_inject("ftruncate", 1000, ENOMEM);
    ((volatile char *)mmk_arena_base(a))[3 * MiB] = 1;
    _exit(5);
}

Test(arena, anonymous_store_failure_names_the_arena, .init = setup, .fini = teardown)
{
    char err[1024];
    int st = run_child(store_into_anonymous_on_full_memory, NULL, err, sizeof err);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "status %#x", st);
    cr_expect(strstr(err, "mmkit: arena (anonymous): ") == err, "stderr: %s", err);
    cr_expect(strstr(err, "ENOMEM (12, "), "stderr: %s", err);
}

/* ---- kill -9 after sync ----------------------------------------------------------------- */

Test(arena, kill9_after_sync_loses_nothing, .init = setup, .fini = teardown)
{
    const char *path = path_of("crash");
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
        if (!a)
            _exit(3);
        unsigned char *p = mmk_arena_alloc(a, 3 * MiB, 1);
        if (!p)
            _exit(4);
        for (size_t i = 0; i < 3 * MiB; i++)
            p[i] = (unsigned char)(i % 253 + 1);
        memset(p + 3 * MiB - 100, 0, 100); /* allocated zeros count too */
        unsigned char *q = mmk_arena_base(a);
        q[5 * MiB] = 0x77; /* a plain store past the allocation pointer */
        if (mmk_arena_sync(a) != 0)
            _exit(5);
        if (write(ready[1], "s", 1) != 1)
            _exit(6);
        for (size_t i = 6 * MiB;; i = 6 * MiB + (i + 4096) % (64 * MiB))
            q[i] = 1; /* keep growing until killed */
    }
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the child synced");
    usleep(20000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    mmk_arena *a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    unsigned char *p = mmk_arena_base(a);
    size_t bad = 0;
    for (size_t i = 0; i < 3 * MiB - 100; i++)
        bad += p[i] != (unsigned char)(i % 253 + 1);
    cr_expect_eq(bad, 0, "bytes written before the sync are all there");
    cr_expect_eq(p[5 * MiB], 0x77);
    cr_expect_geq(mmk_arena_used(a), 5 * MiB + 1);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* ---- read-only arenas ---------------------------------------------------------------------- */

static void make_file(const char *path, const char *text)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(arena, read_only_arena, .init = setup, .fini = teardown)
{
    const char *path = path_of("ro");
    make_file(path, "read me");
    mmk_arena *a = mmk_arena_open(path, MiB, MMK_ARENA_RDONLY);
    cr_assert_not_null(a);
    cr_expect_eq(memcmp(mmk_arena_base(a), "read me", 7), 0);
    cr_expect_eq(mmk_arena_size(a), 7);
    cr_expect_eq(mmk_arena_used(a), 7);
    cr_expect_eq(mmk_arena_reserve(a, 100), -EBADF);
    errno = 0;
    cr_expect_null(mmk_arena_alloc(a, 1, 1));
    cr_expect_eq(errno, EBADF);
    cr_expect_eq(mmk_arena_sync(a), 0);

    /* A writer in another handle grows the file: the reader sees it. */
    mmk_arena *w = mmk_arena_open(path, MiB, 0);
    cr_assert_not_null(w);
    poke((char *)mmk_arena_base(w) + 100 * KiB, 'w');
    cr_expect_eq(peek((char *)mmk_arena_base(a) + 100 * KiB), 'w');
    cr_expect_eq(mmk_arena_close(w), 0);
    cr_expect_eq(file_size(path), (off_t)MiB, "no trim while the reader has the file open");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)MiB, "a reader never trims");
    w = mmk_arena_open(path, MiB, 0);
    cr_assert_not_null(w);
    cr_expect_eq(mmk_arena_close(w), 0);
    cr_expect_eq(file_size(path), (off_t)(100 * KiB + 1), "the next sole writer does");
}

Test(arena, read_only_store_is_sigsegv, .init = setup, .fini = teardown, .signal = SIGSEGV)
{
    const char *path = path_of("ro-store");
    make_file(path, "read me");
    mmk_arena *a = mmk_arena_open(path, MiB, MMK_ARENA_RDONLY);
    cr_assert_not_null(a);
    poke(mmk_arena_base(a), 'x');
}

Test(arena, read_only_load_past_end_is_sigbus, .init = setup, .fini = teardown, .signal = SIGBUS)
{
    const char *path = path_of("ro-load");
    make_file(path, "read me");
    mmk_arena *a = mmk_arena_open(path, MiB, MMK_ARENA_RDONLY);
    cr_assert_not_null(a);
    (void)peek((char *)mmk_arena_base(a) + 64 * KiB);
}

/* ---- the ftruncate fallback -------------------------------------------------------------------- */

Test(arena, growth_without_fallocate, .init = setup, .fini = teardown)
{
    const char *path = path_of("nofallocate");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    mmk__sys_inject("fallocate", 1, EOPNOTSUPP);
    unsigned char *b = mmk_arena_base(a);
    poke(b + 3 * MiB, 3);
    cr_expect_eq(peek(b + 3 * MiB), 3);
    poke(b + 20 * MiB, 20);
    cr_expect_geq(mmk_arena_size(a), 20 * MiB + 1);
    cr_expect_eq(mmk_arena_reserve(a, 30 * MiB), 0);
    cr_expect_eq(mmk_arena_size(a), 30 * MiB);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(20 * MiB + 1));
}

Test(arena, file_readable_with_read_while_open, .init = setup, .fini = teardown)
{
    const char *path = path_of("live");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    char *p = mmk_arena_alloc(a, 6, 1);
    memcpy(p, "hello", 6);
    cr_assert_eq(mmk_arena_sync(a), 0);
    int fd = open(path, O_RDONLY);
    char buf[6];
    cr_assert_eq(read(fd, buf, 6), 6);
    close(fd);
    cr_expect_str_eq(buf, "hello");
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(mmk_fault_area_count(), 0, "close unregisters the area");
}

/* ---- regressions -------------------------------------------------------------------------------- */

static unsigned char byte_at(const char *path, off_t off)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    unsigned char c = 0;
    ssize_t n = pread(fd, &c, 1, off);
    close(fd);
    cr_assert_eq(n, 1, "no byte at %lld in %s", (long long)off, path);
    return c;
}

Test(arena, store_into_the_last_partial_page_after_reopen, .init = setup, .fini = teardown)
{
    const char *path = path_of("tail");
    mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    memcpy(mmk_arena_alloc(a, 10, 1), "0123456789", 10);
    cr_assert_eq(mmk_arena_close(a), 0);
    cr_assert_eq(file_size(path), 10, "close trims to the byte: the file ends mid-page");

    /* A plain store past the end of the file but inside its last page does
     * not fault: it must still reach the file. */
    a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    unsigned char *b = mmk_arena_base(a);
    poke(b + 100, 'X');
    cr_expect_eq(mmk_arena_used(a), 101);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), 101);
    cr_expect_eq(byte_at(path, 100), 'X');

    /* The same with a later growth elsewhere, and with a second handle
     * open at close (no trim). */
    a = mmk_arena_open(path, GiB, 0);
    mmk_arena *other = mmk_arena_open(path, GiB, MMK_ARENA_RDONLY);
    cr_assert(a && other);
    b = mmk_arena_base(a);
    poke(b + 200, 'Y');
    poke(b + 3 * MiB, 'Z');
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(peek((unsigned char *)mmk_arena_base(other) + 200), 'Y');
    cr_expect_eq(mmk_arena_close(other), 0);
    a = mmk_arena_open(path, GiB, 0);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 3 * MiB + 1);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(path), (off_t)(3 * MiB + 1));
    cr_expect_eq(byte_at(path, 100), 'X');
    cr_expect_eq(byte_at(path, 200), 'Y');
    cr_expect_eq(byte_at(path, 3 * MiB), 'Z');
}

Test(arena, close_keeps_data_past_its_own_reserve, .init = setup, .fini = teardown)
{
    const char *path = path_of("reserves");
    mmk_arena *small = mmk_arena_open(path, MiB, MMK_ARENA_CREATE);
    mmk_arena *big = mmk_arena_open(path, 64 * MiB, 0);
    cr_assert(small && big);
    unsigned char *b = mmk_arena_base(big);
    memset(b, 'A', 100);
    memset(b + 8 * MiB, 'B', 100);
    cr_expect_eq(mmk_arena_close(big), 0);
    cr_expect_geq(mmk_arena_used(small), 8 * MiB + 100, "data past the reservation counts");
    cr_expect_eq(mmk_arena_close(small), 0, "the last closer, with the smaller reserve");
    cr_expect_geq(file_size(path), (off_t)(8 * MiB + 100));
    cr_expect_eq(byte_at(path, 8 * MiB + 99), 'B');

    /* The other order: the small one closes first, then the big one trims. */
    big = mmk_arena_open(path, 64 * MiB, 0);
    cr_assert_not_null(big);
    cr_expect_eq(mmk_arena_used(big), 8 * MiB + 100);
    cr_expect_eq(mmk_arena_close(big), 0);
    cr_expect_eq(file_size(path), (off_t)(8 * MiB + 100));
    cr_expect_eq(byte_at(path, 0), 'A');
}

#define RACE_ROUNDS 3000

struct grow_race {
    mmk_arena *volatile a;
    pthread_barrier_t bar;
};

static void *race_reserver(void *arg)
{
    struct grow_race *g = arg;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        pthread_barrier_wait(&g->bar);
        mmk_arena_reserve(g->a, page);
        pthread_barrier_wait(&g->bar);
    }
    return NULL;
}

/* Arena after arena (at the same address, most likely), one thread stores
 * into page 0 while another grows the file: some stores find the file grown
 * by the time their handler looks.  That is an ordinary race, never fatal. */
static void growth_race_rounds(const char *path)
{
    struct grow_race g;
    unsigned fl = path ? MMK_ARENA_CREATE | MMK_ARENA_TRUNC : 0;
    pthread_barrier_init(&g.bar, NULL, 2);
    g.a = mmk_arena_open(path, MiB, fl);
    if (!g.a)
        _exit(3);
    pthread_t t;
    if (pthread_create(&t, NULL, race_reserver, &g) != 0)
        _exit(4);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        volatile char *b = mmk_arena_base(g.a);
        pthread_barrier_wait(&g.bar);
        b[0] = 1;
        pthread_barrier_wait(&g.bar);
        if (mmk_arena_close(g.a) != 0)
            _exit(5);
        g.a = mmk_arena_open(path, MiB, fl);
        if (!g.a)
            _exit(6);
    }
    pthread_join(t, NULL);
    _exit(0);
}

Test(arena, growth_race_is_never_fatal, .init = setup, .fini = teardown)
{
    char err[1024];
    int st = run_child(growth_race_rounds, NULL, err, sizeof err);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "anonymous: status %#x, stderr: %s", st, err);
    st = run_child(growth_race_rounds, path_of("race"), err, sizeof err);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "file: status %#x, stderr: %s", st, err);
}

#define FORK_SPAN (64 * MiB)

Test(arena, anonymous_arena_grows_from_both_sides_of_fork, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(NULL, GiB, 0);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, page, page), 0); /* a growth per page: many races */
    unsigned char *b = mmk_arena_base(a);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    int k = pid == 0;
    for (size_t pg = (size_t)k; pg < FORK_SPAN / page; pg += 2)
        memset(b + pg * page, 1 + k, page);
    if (pid == 0)
        _exit(0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
    size_t bad = 0;
    for (size_t pg = 0; pg < FORK_SPAN / page; pg++)
        bad += b[pg * page] != 1 + (pg & 1) || b[pg * page + page - 1] != 1 + (pg & 1);
    cr_expect_eq(bad, 0, "%zu pages lost: a growth shrank the memfd", bad);
    cr_expect_eq(mmk_arena_used(a), FORK_SPAN);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* Another process allocates zeros, syncs, and crashes while (before or after)
 * this one closes: what it synced stays used. */
static void sync_zeros_then_crash(const char *path, int tell, int wait_for)
{
    mmk_arena *b = mmk_arena_open(path, GiB, 0);
    if (!b || !mmk_arena_alloc(b, 5000, 1) || mmk_arena_sync(b) != 0)
        _exit(2);
    char c = 's';
    if (write(tell, &c, 1) != 1)
        _exit(3);
    if (wait_for >= 0 && read(wait_for, &c, 1) < 0)
        _exit(4);
    _exit(0); /* a crash: never closes */
}

Test(arena, close_never_lowers_what_another_handle_synced, .init = setup, .fini = teardown)
{
    const char *path = path_of("synced");
    for (int crash_first = 0; crash_first < 2; crash_first++) {
        mmk_arena *a = mmk_arena_open(path, GiB, MMK_ARENA_CREATE | MMK_ARENA_TRUNC);
        cr_assert_not_null(a);
        int up[2], down[2];
        cr_assert_eq(pipe(up), 0);
        cr_assert_eq(pipe(down), 0);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            sync_zeros_then_crash(path, up[1], down[0]);
        }
        close(up[1]);
        close(down[0]);
        char c;
        cr_assert_eq(read(up[0], &c, 1), 1, "the other process synced");
        int st;
        if (crash_first) {
            close(down[1]);
            cr_assert_eq(waitpid(pid, &st, 0), pid);
        }
        cr_expect_eq(mmk_arena_close(a), 0); /* a's own used is 0 */
        if (!crash_first) {
            close(down[1]);
            cr_assert_eq(waitpid(pid, &st, 0), pid);
        }
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %#x", st);
        close(up[0]);
        if (crash_first)
            cr_expect_eq(file_size(path), 5000, "the sole closer trims to the synced size");
        a = mmk_arena_open(path, GiB, 0);
        cr_assert_not_null(a);
        cr_expect_eq(mmk_arena_used(a), 5000, "crash %s the close: the synced 5000 stay used",
                     crash_first ? "before" : "during");
        cr_expect_eq(mmk_arena_close(a), 0);
        cr_expect_eq(file_size(path), 5000);
    }
}

static int pass_fault(const mmk_fault *f, void *ctx)
{
    (void)f;
    (void)ctx;
    return MMK_FAULT_PASS;
}

static int sigxfsz_is_default(void)
{
    struct sigaction sa;
    cr_assert_eq(sigaction(SIGXFSZ, NULL, &sa), 0);
    return sa.sa_handler == SIG_DFL;
}

Test(arena, a_failed_open_leaves_the_file_alone, .init = setup, .fini = teardown)
{
    signal(SIGXFSZ, SIG_DFL);
    char keep[PATH_MAX + 64];
    snprintf(keep, sizeof keep, "%s", path_of("keep"));
    make_file(keep, "precious data");
    size_t huge = (size_t)1 << 47; /* more than a 47-bit address space has free */

    errno = 0;
    cr_expect_null(mmk_arena_open(keep, huge, MMK_ARENA_TRUNC));
    cr_expect_eq(errno, ENOMEM);
    cr_expect_eq(file_size(keep), 13, "TRUNC took effect although the open failed");

    char fresh[PATH_MAX + 64];
    snprintf(fresh, sizeof fresh, "%s", path_of("fresh"));
    cr_expect_null(mmk_arena_open(fresh, huge, MMK_ARENA_CREATE | MMK_ARENA_EXCL));
    cr_expect_eq(errno, ENOMEM);
    cr_expect_neq(access(fresh, F_OK), 0, "the failed open left a file behind");

    /* A failure after the file was created (the address range is taken by
     * another area): the file goes again. */
    size_t span = 64 * MiB;
    void *hole = mmap(NULL, 2 * span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(hole, MAP_FAILED);
    cr_assert_eq(munmap(hole, 2 * span), 0);
    mmk_area *blocker = mmk_area_register(hole, 2 * span, pass_fault, NULL);
    cr_assert_not_null(blocker);
    errno = 0;
    mmk_arena *a = mmk_arena_open(fresh, span, MMK_ARENA_CREATE);
    cr_expect_null(a, "the reservation did not land in the blocked range: test inconclusive");
    if (!a) {
        cr_expect_eq(errno, EEXIST);
        cr_expect_neq(access(fresh, F_OK), 0, "the failed open left its new file behind");
    } else {
        mmk_arena_close(a);
    }
    cr_expect_eq(mmk_area_unregister(blocker), 0);
    cr_expect(sigxfsz_is_default(), "a failed open leaves SIGXFSZ alone");

    /* TRUNC while another handle has the file open would pull its pages
     * away: EBUSY, and nothing changes. */
    mmk_arena *other = mmk_arena_open(keep, MiB, 0);
    cr_assert_not_null(other, "%s", strerror(errno));
    errno = 0;
    cr_expect_null(mmk_arena_open(keep, MiB, MMK_ARENA_TRUNC));
    cr_expect_eq(errno, EBUSY);
    cr_expect_eq(memcmp(mmk_arena_base(other), "precious data", 13), 0);
    cr_expect_eq(mmk_arena_close(other), 0);
    cr_expect_eq(file_size(keep), 13);

    /* The last step that can fail (extending the file to the end of its
     * last page, here on a full disk): SIGXFSZ is put back, the file is as
     * it was. */
    signal(SIGXFSZ, SIG_DFL);
    mmk__sys_inject("fallocate", 1, ENOSPC);
    errno = 0;
    cr_expect_null(mmk_arena_open(keep, MiB, 0));
    cr_expect_eq(errno, ENOSPC);
    mmk__sys_inject("fallocate", 0, 0);
    cr_expect(sigxfsz_is_default(), "a failed open undid its SIGXFSZ change");
    cr_expect_eq(file_size(keep), 13);

    /* And with nothing in the way, TRUNC works. */
    a = mmk_arena_open(keep, MiB, MMK_ARENA_TRUNC);
    cr_assert_not_null(a);
    cr_expect_eq(mmk_arena_used(a), 0);
    cr_expect_eq(mmk_arena_close(a), 0);
    cr_expect_eq(file_size(keep), 0);
}

Test(arena, anonymous_plain_stores_count_as_used, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(NULL, GiB, 0);
    cr_assert_not_null(a);
    unsigned char *b = mmk_arena_base(a);
    poke(b + 3 * MiB + 5, 1);
    cr_expect_eq(mmk_arena_used(a), 3 * MiB + 6, "the header: plain stores anywhere count");
    cr_assert_not_null(mmk_arena_alloc(a, 10, 1));
    cr_expect_eq(mmk_arena_used(a), 3 * MiB + 6);
    poke(b + 3 * MiB + 5, 0);
    cr_expect_eq(mmk_arena_used(a), 10, "zeros past the allocation pointer are slack");
    cr_expect_eq(mmk_arena_close(a), 0);
}
