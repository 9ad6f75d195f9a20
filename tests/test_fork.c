/* test_fork.c - fork() from a process whose other threads are inside mmkit
 * (taking region write faults, growing an arena, changing the fault table):
 * the child must be able to use the fault router, arenas and mirrors, and an
 * anonymous arena stays growable from both sides. */
#include "mmkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 50
/* Seconds a child may take for what it does; only a hang comes near it. */
#define CHILD_TIMEOUT 20
#define MiB ((size_t)1 << 20)

static size_t page;
static atomic_int stop;

static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    atomic_store(&stop, 0);
}

/* ---- what a child does ------------------------------------------------------ */

static int never(const mmk_fault *f, void *ctx)
{
    (void)f;
    (void)ctx;
    return MMK_FAULT_PASS;
}

/* Exit codes name the call that failed; a hang ends with SIGALRM. */
static void child_uses_mmkit(mmk_arena *inherited, size_t round)
{
    alarm(CHILD_TIMEOUT);
    /* Grow the inherited anonymous arena from the child: a page of its own,
     * past everything the parent wrote so far. */
    unsigned char *b = mmk_arena_base(inherited);
    b[(2 * round + 1) * page] = (unsigned char)(round + 1);
    if (mmk_arena_close(inherited) != 0)
        _exit(10);
    mmk_arena *a = mmk_arena_open(NULL, 16 * MiB, 0);
    if (!a)
        _exit(11);
    memset(mmk_arena_base(a), 7, 3 * page);
    if (mmk_arena_used(a) != 3 * page)
        _exit(12);
    if (mmk_arena_close(a) != 0)
        _exit(13);
    mmk_mirror *m = mmk_mirror_create(page, 0);
    if (!m)
        _exit(14);
    if (mmk_mirror_begin_write(m) != 0)
        _exit(15);
    ((char *)mmk_mirror_rw(m))[0] = 1;
    mmk_mirror_end_write(m);
    if (mmk_mirror_set_policy(m, MMK_MIRROR_ABORT, NULL, NULL) != 0)
        _exit(16);
    if (mmk_mirror_destroy(m) != 0)
        _exit(17);
    static char spare[4096];
    mmk_area *x = mmk_area_register(spare, sizeof spare, never, NULL);
    if (!x)
        _exit(18);
    if (mmk_area_unregister(x) != 0)
        _exit(19);
    _exit(0);
}

/* Fork ROUNDS children while other threads run; each child uses mmkit. */
static void fork_rounds(mmk_arena *shared)
{
    unsigned char *b = mmk_arena_base(shared);
    for (size_t round = 0; round < ROUNDS; round++) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            child_uses_mmkit(shared, round);
        /* The parent grows the arena too, on the even pages. */
        b[2 * round * page] = (unsigned char)(round + 101);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "round %zu: child %s %d (SIGALRM: it hung)", round,
                  WIFSIGNALED(st) ? "died of signal" : "exited with",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        cr_assert_eq(b[(2 * round + 1) * page], round + 1,
                     "round %zu: the child's growth of the shared arena is lost", round);
    }
    for (size_t round = 0; round < ROUNDS; round++)
        cr_expect_eq(b[2 * round * page], round + 101);
    cr_expect_geq(mmk_arena_size(shared), 2 * ROUNDS * page);
}

/* ---- other threads ---------------------------------------------------------- */

static void *region_writer(void *arg)
{
    mmk_region *r = arg;
    char *p = mmk_region_base(r);
    size_t n = mmk_region_size(r) / page;
    while (!atomic_load(&stop)) {
        mmk_region *s = mmk_region_snapshot(r, 0);
        for (size_t i = 0; i < n; i++)
            p[i * page]++; /* a write fault on every page */
        if (s)
            mmk_region_destroy(s);
    }
    return NULL;
}

static void *arena_grower(void *arg)
{
    /* Anonymous arenas grow by ftruncate under the growth lock; a page per
     * growth makes it likely that the lock is held when another thread
     * forks. */
    (void)arg;
    while (!atomic_load(&stop)) {
        mmk_arena *a = mmk_arena_open(NULL, 64 * MiB, 0);
        if (!a)
            continue;
        mmk_arena_set_growth(a, page, page);
        char *b = mmk_arena_base(a);
        for (size_t i = 0; i < 256 && !atomic_load(&stop); i++)
            b[i * page] = 1;
        mmk_arena_close(a);
    }
    return NULL;
}

static void *table_churner(void *arg)
{
    char *spare = arg;
    while (!atomic_load(&stop)) {
        mmk_area *x = mmk_area_register(spare, page, never, NULL);
        if (x)
            mmk_area_unregister(x);
    }
    return NULL;
}

static void run_with(void *(*fn)(void *), void *arg)
{
    mmk_arena *shared = mmk_arena_open(NULL, 64 * MiB, 0);
    cr_assert_not_null(shared);
    cr_assert_eq(mmk_arena_set_growth(shared, page, page), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, arg), 0);
    fork_rounds(shared);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    cr_expect_eq(mmk_arena_close(shared), 0);
}

Test(fork, child_of_a_process_taking_region_write_faults, .init = setup, .timeout = 240)
{
    mmk_region *r = mmk_region_create(64 * page, 0);
    cr_assert_not_null(r);
    run_with(region_writer, r);
    cr_expect_eq(mmk_region_destroy(r), 0);
}

Test(fork, child_of_a_process_growing_an_anonymous_arena, .init = setup, .timeout = 240)
{
    run_with(arena_grower, NULL);
}

Test(fork, child_of_a_process_changing_the_fault_table, .init = setup, .timeout = 240)
{
    char *spare = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(spare != MAP_FAILED);
    run_with(table_churner, spare);
}
