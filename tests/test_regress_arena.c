/* test_regress_arena.c - reproducers of arena bugs, one named test each
 * (issue 8): they failed on the code before the fix. */
#include "mmkit.h"
#include "sys.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMPDIR_TAG "mmk-regress-arena-XXXXXX"
#include "tmpdir.h"

#define MiB ((size_t)1 << 20)

/* mmk_arena_set_growth(a, SIZE_MAX, 0): rounding SIZE_MAX up to a page
 * wrapped to 0 and growth became one page per fault.  A chunk that large
 * means "all of the reservation". */
Test(regress_arena, set_growth_size_max_grows_to_the_reservation, .init = setup, .fini = teardown)
{
    mmk_arena *a = mmk_arena_open(NULL, 8 * MiB, 0);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, SIZE_MAX, 0), 0);
    ((volatile char *)mmk_arena_base(a))[0] = 1;
    cr_expect_eq(mmk_arena_size(a), 8 * MiB, "one fault grew the file to %zu bytes",
                 mmk_arena_size(a));
    cr_expect_eq(mmk_arena_close(a), 0);

    /* The same for the upper bound alone. */
    a = mmk_arena_open(NULL, 8 * MiB, 0);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_arena_set_growth(a, 2 * MiB, SIZE_MAX), 0);
    for (size_t off = 0; off < 8 * MiB; off += page)
        ((volatile char *)mmk_arena_base(a))[off] = 1;
    struct mmk_arena_stats st;
    cr_assert_eq(mmk_arena_stats(a, &st), 0);
    /* 2 MiB, then doubling: 2 + 2 + 4 = 8 MiB in three growths. */
    cr_expect_leq(st.faults, 3, "%zu growth faults for 8 MiB", st.faults);
    cr_expect_eq(mmk_arena_close(a), 0);
}

/* Close trimmed the file whenever flock failed with anything but
 * EWOULDBLOCK, though another handle may have it open and be using the
 * bytes past this handle's used size. */
Test(regress_arena, close_without_the_exclusive_lock_does_not_trim, .init = setup, .fini = teardown)
{
    const char *path = path_of("shared");
    mmk_arena *a = mmk_arena_open(path, 64 * MiB, MMK_ARENA_CREATE);
    cr_assert_not_null(a);
    mmk_arena *b = mmk_arena_open(path, 64 * MiB, 0);
    cr_assert_not_null(b);
    /* b allocates three pages of zeros (nothing marks them used but b's
     * allocation pointer, which a cannot see). */
    char *p = mmk_arena_alloc(b, 3 * page, page);
    cr_assert_not_null(p);
    off_t before = file_size(path);
    cr_assert_geq(before, (off_t)(3 * page));
    /* a's flock(LOCK_EX | LOCK_NB) fails with something else than
     * EWOULDBLOCK (a filesystem without flock says ENOLCK). */
    cr_assert_eq(mmk__sys_inject("flock", 1, ENOLCK), 0);
    cr_expect_eq(mmk_arena_close(a), 0);
    mmk__sys_inject("flock", 0, 0);
    cr_expect_eq(file_size(path), before, "a's close trimmed the file under b");
    memset(p, 0, 3 * page); /* b's pages are still there: no SIGBUS */
    cr_expect_eq(mmk_arena_close(b), 0);
}

/* mmk_arena_close from a fault handler could not unregister (EDEADLK) and
 * freed the arena anyway: the router kept a pointer to freed memory.  Now
 * it refuses before changing anything, and the arena keeps working. */
static mmk_arena *victim;
static volatile int close_result = 1;

static int close_inside(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    close_result = mmk_arena_close(victim);
    char *pg = (char *)((uintptr_t)f->addr & ~(uintptr_t)(page - 1));
    mprotect(pg, page, PROT_READ | PROT_WRITE);
    return MMK_FAULT_RETRY;
}

Test(regress_arena, close_from_a_handler_keeps_the_arena, .init = setup, .fini = teardown)
{
    victim = mmk_arena_open(NULL, 8 * MiB, 0);
    cr_assert_not_null(victim);
    char *mem = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(mem != MAP_FAILED);
    mmk_area *x = mmk_area_register(mem, page, close_inside, NULL);
    cr_assert_not_null(x);
    size_t areas = mmk_fault_area_count();
    *(volatile char *)mem = 1;
    cr_assert_eq(close_result, -EDEADLK);
    cr_expect_eq(mmk_fault_area_count(), areas);
    /* Still an arena: a store past the end grows it through its handler. */
    char *b = mmk_arena_base(victim);
    b[3 * MiB] = 5;
    cr_expect_eq(mmk_arena_used(victim), 3 * MiB + 1);
    cr_expect_eq(mmk_arena_close(victim), 0);
    cr_expect_eq(mmk_fault_area_count(), areas - 1);
    cr_expect_eq(mmk_area_unregister(x), 0);
}
