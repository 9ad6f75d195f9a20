/* test_regress_mirror.c - reproducers of mirror bugs, one named test each
 * (issue 8): they failed on the code before the fix. */
#include "mmkit.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page;

static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
}

/*
 * set_policy stored ctx, then cb; the handler loaded cb, then ctx: a stray
 * write could run the old callback with the new ctx.  Two callbacks, each
 * with its own ctx, are switched flat out while another thread makes stray
 * writes; each callback checks that it got its own ctx.
 */
static int ctx_a, ctx_b;
static atomic_long torn, calls;
static atomic_int stop;

static int open_and_retry(const mmk_fault *f)
{
    char *p = (char *)((uintptr_t)f->addr & ~(uintptr_t)(page - 1));
    if (mprotect(p, page, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    atomic_fetch_add(&calls, 1);
    return MMK_FAULT_RETRY;
}

static int cb_a(const mmk_fault *f, void *ctx)
{
    if (ctx != &ctx_a)
        atomic_fetch_add(&torn, 1);
    return open_and_retry(f);
}

static int cb_b(const mmk_fault *f, void *ctx)
{
    if (ctx != &ctx_b)
        atomic_fetch_add(&torn, 1);
    return open_and_retry(f);
}

static void *switcher(void *arg)
{
    mmk_mirror *m = arg;
    while (!atomic_load(&stop)) {
        mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_a, &ctx_a);
        mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_b, &ctx_b);
    }
    return NULL;
}

#define STRAYS 20000

Test(regress_mirror, callback_never_gets_another_callbacks_ctx, .init = setup, .timeout = 120)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_a, &ctx_a), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, switcher, m), 0);
    char *ro = (char *)mmk_mirror_ro(m);
    for (long i = 0; i < STRAYS && atomic_load(&torn) == 0; i++) {
        /* The callback opened the page; close it again for the next one. */
        cr_assert_eq(mprotect(ro, page, PROT_READ), 0);
        *(volatile char *)ro = 0; /* a stray write: one callback */
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    cr_expect_eq(atomic_load(&torn), 0, "%ld of %ld callbacks ran with the other's ctx",
                 atomic_load(&torn), atomic_load(&calls));
    cr_expect_gt(atomic_load(&calls), 0);
    cr_assert_eq(mprotect(ro, page, PROT_READ), 0);
    cr_expect_eq(mmk_mirror_destroy(m), 0);
}

/* Once set_policy returns, the old callback no longer runs on any thread. */
static atomic_int in_old, old_running_after;

static int slow_old(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    atomic_store(&in_old, 1);
    usleep(200 * 1000);
    atomic_store(&in_old, 2);
    return open_and_retry(f);
}

static void *stray_once(void *arg)
{
    *(volatile char *)arg = 0;
    return NULL;
}

Test(regress_mirror, set_policy_waits_for_the_old_callback, .init = setup)
{
    mmk_mirror *m = mmk_mirror_create(page, 0);
    cr_assert_not_null(m);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, slow_old, NULL), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stray_once, (void *)mmk_mirror_ro(m)), 0);
    while (atomic_load(&in_old) == 0)
        usleep(1000);
    cr_assert_eq(mmk_mirror_set_policy(m, MMK_MIRROR_CALLBACK, cb_a, &ctx_a), 0);
    old_running_after = atomic_load(&in_old) != 2;
    pthread_join(t, NULL);
    cr_expect(!old_running_after, "set_policy returned while the old callback ran");
    cr_assert_eq(mprotect((void *)mmk_mirror_ro(m), page, PROT_READ), 0);
    cr_expect_eq(mmk_mirror_destroy(m), 0);
}

/* From inside a fault handler set_policy would wait for itself. */
static mmk_mirror *self_m;
static volatile int inner_result = 1;

static int set_inside(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    inner_result = mmk_mirror_set_policy(self_m, MMK_MIRROR_ABORT, NULL, NULL);
    return open_and_retry(f);
}

Test(regress_mirror, set_policy_from_a_handler_is_edeadlk, .init = setup)
{
    self_m = mmk_mirror_create(page, 0);
    cr_assert_not_null(self_m);
    cr_assert_eq(mmk_mirror_set_policy(self_m, MMK_MIRROR_CALLBACK, set_inside, NULL), 0);
    char *ro = (char *)mmk_mirror_ro(self_m);
    *(volatile char *)ro = 0;
    cr_expect_eq(inner_result, -EDEADLK);
    /* Unchanged: the next stray still calls set_inside. */
    cr_assert_eq(mprotect(ro, page, PROT_READ), 0);
    inner_result = 1;
    *(volatile char *)ro = 0;
    cr_expect_eq(inner_result, -EDEADLK);
    cr_assert_eq(mprotect(ro, page, PROT_READ), 0);
    cr_expect_eq(mmk_mirror_destroy(self_m), 0);
}
