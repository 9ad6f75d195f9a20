/* test_regress_fault.c - reproducers of fault-router bugs, one named test
 * each (issue 8): they failed on the code before the fix. */
#include "mmkit.h"
#include "sys.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fault_helpers.h"

static volatile int opened;

static int open_page(const mmk_fault *f, void *ctx)
{
    (void)ctx;
    char *p = (char *)((uintptr_t)f->addr & ~(uintptr_t)(page - 1));
    if (mprotect(p, page, PROT_READ | PROT_WRITE) != 0)
        return MMK_FAULT_PASS;
    opened++;
    return MMK_FAULT_RETRY;
}

/* A stale handle: a is unregistered, b registered at the same address (with
 * malloc'ed handles b was a's memory again).  Unregistering a again must be
 * -EINVAL, as mmk_fault(3) promises, and leave b alone. */
Test(regress_fault, stale_unregister_is_einval_and_keeps_the_newcomer, .init = setup)
{
    char *mem = map_none(1);
    mmk_area *a = mmk_area_register(mem, page, open_page, NULL);
    cr_assert_not_null(a);
    cr_assert_eq(mmk_area_unregister(a), 0);
    mmk_area *b = mmk_area_register(mem, page, open_page, NULL);
    cr_assert_not_null(b);
    cr_expect_eq(mmk_area_unregister(a), -EINVAL, "a stale handle removed something");
    cr_expect_eq(mmk_fault_area_count(), 1);
    opened = 0;
    *(volatile char *)mem = 1; /* b still handles its faults */
    cr_expect_eq(opened, 1);
    cr_expect_eq(mmk_area_unregister(b), 0);
    cr_expect_eq(mmk_area_unregister(b), -EINVAL);
}

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

/* Unregistering must work with the heap exhausted: teardown cannot fail. */
Test(regress_fault, unregister_succeeds_with_the_heap_exhausted, .init = setup)
{
#ifdef ASAN
    cr_skip_test("RLIMIT_AS cannot be lowered under AddressSanitizer");
#else
    enum { N = 200 };
    char *mem = map_none(2 * N);
    static mmk_area *areas[N];
    for (int i = 0; i < N; i++) {
        areas[i] = mmk_area_register(mem + 2 * (size_t)i * page, page, never, NULL);
        cr_assert_not_null(areas[i]);
    }
    /* Exhaust the heap: lower the address-space limit to what is mapped now
     * plus a little, then take blocks, from large to tiny, until none is
     * left. */
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    size_t vm = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%zu", &vm), 1);
    fclose(f);
    struct rlimit low = { vm * page + 8 * ((size_t)1 << 20), old.rlim_max };
    cr_assert_eq(setrlimit(RLIMIT_AS, &low), 0);
    void **blocks = NULL;
    size_t nblocks = 0;
    for (size_t sz = 4096; sz >= 16; sz /= 2) {
        void *p;
        while ((p = malloc(sz)) != NULL) {
            *(void **)p = blocks;
            blocks = p;
            nblocks++;
        }
    }
    int failed = 0;
    /* Remove them in an order that splits and empties chunks. */
    for (int i = 0; i < N; i += 2)
        failed += mmk_area_unregister(areas[i]) != 0;
    for (int i = N - 1; i > 0; i -= 2)
        failed += mmk_area_unregister(areas[i]) != 0;
    while (blocks) {
        void *next = *blocks;
        free(blocks);
        blocks = next;
    }
    setrlimit(RLIMIT_AS, &old);
    cr_assert_gt(nblocks, 0);
    cr_expect_eq(failed, 0, "%d unregisters failed with the heap exhausted", failed);
    cr_expect_eq(mmk_fault_area_count(), 0);
#endif
}

/* ---- chaining: the previous handler's sa_mask and SA_RESETHAND ------------- */

static volatile int prev_calls;
static volatile int usr1_blocked, segv_blocked;

static void masked_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    usr1_blocked = sigismember(&cur, SIGUSR1);
    segv_blocked = sigismember(&cur, SIGSEGV);
    prev_calls++;
    char *p = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(page - 1));
    mprotect(p, page, PROT_READ | PROT_WRITE);
}

static void install_previous(int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = masked_handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
    cr_assert_eq(mmk_fault_install(), 0); /* mmkit takes over, remembers it */
}

Test(regress_fault, chained_handler_runs_with_its_sa_mask, .init = setup)
{
    install_previous(0);
    char *mem = map_none(1);
    *(volatile char *)mem = 1; /* no area: passed to the previous handler */
    cr_assert_eq(prev_calls, 1);
    cr_expect(usr1_blocked, "sa_mask of the previous handler not applied");
    cr_expect(segv_blocked, "without SA_NODEFER the signal is blocked in its handler");
    sigset_t cur;
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    cr_expect(!sigismember(&cur, SIGUSR1), "the mask is restored after the handler");
}

Test(regress_fault, chained_handler_with_sa_nodefer_leaves_the_signal_open, .init = setup)
{
    install_previous(SA_NODEFER);
    char *mem = map_none(1);
    *(volatile char *)mem = 1;
    cr_assert_eq(prev_calls, 1);
    cr_expect(usr1_blocked);
    cr_expect(!segv_blocked);
}

/* SA_RESETHAND: the previous handler runs once; the next unclaimed fault
 * gets the default action, while mmkit's own areas keep working. */
Test(regress_fault, chained_sa_resethand_runs_once, .init = setup, .signal = SIGSEGV)
{
    install_previous(SA_RESETHAND);
    char *mem = map_none(3);
    mmk_area *a = mmk_area_register(mem + 2 * page, page, open_page, NULL);
    cr_assert_not_null(a);
    *(volatile char *)mem = 1;
    cr_assert_eq(prev_calls, 1);
    *(volatile char *)(mem + 2 * page) = 1; /* still ours */
    cr_assert_eq(opened, 1);
    *(volatile char *)(mem + page) = 1; /* the default action now: dies */
    cr_assert_fail("the SA_RESETHAND handler ran %d times", prev_calls);
}

/* ---- everything through sys.h: injected failures reach the router ----------- */

Test(regress_fault, injected_sigaction_failure_reaches_install, .init = setup)
{
    cr_assert_eq(mmk__sys_inject("sigaction", 1, EPERM), 0);
    cr_expect_eq(mmk_fault_install(), -EPERM);
    char *mem = map_none(1);
    cr_assert_eq(mmk__sys_inject("sigaction", 2, EINVAL), 0);
    cr_expect_null(mmk_area_register(mem, page, never, NULL));
    cr_expect_eq(errno, EINVAL);
    mmk__sys_inject("sigaction", 0, 0);
    cr_expect_eq(mmk_fault_install(), 0);
}

Test(regress_fault, injected_sigaltstack_failure_reaches_altstack, .init = setup)
{
    cr_assert_eq(mmk__sys_inject("sigaltstack", 1, ENOMEM), 0);
    cr_expect_eq(mmk_fault_altstack(0), -ENOMEM);
    cr_expect_eq(mmk_fault_altstack(0), 0);
    cr_expect_eq(mmk_fault_altstack_free(), 0);
}

/* ---- mmk_strerror ---------------------------------------------------------- */

Test(regress_fault, strerror_of_int_min_does_not_overflow)
{
    /* -INT_MIN is undefined; UBSan (make test-asan) stopped here. */
    cr_expect_str_eq(mmk_strerror(INT_MIN), "unknown error");
    cr_expect_str_eq(mmk_strerror(INT_MAX), "unknown error");
    cr_expect_str_neq(mmk_strerror(-EINVAL), "unknown error");
}
