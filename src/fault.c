/*
 * fault.c - the fault router: one SIGSEGV/SIGBUS handler for the process,
 * dispatching to per-range handlers.
 *
 * The area table is an immutable sorted array.  Writers (register,
 * unregister) build a new array under a mutex, publish it with one atomic
 * store and then wait for a grace period before freeing the old array and any
 * removed area: a handler that may still be reading the old array, or running
 * the removed area's callback, must be done first.
 *
 * The grace period is a two-counter epoch scheme.  A reader (the signal
 * handler) reads the epoch E, increments active[E & 1], and re-reads the
 * epoch; if it moved, it backs out and tries again.  A writer publishes the
 * new table, advances the epoch, and waits until active[old & 1] drains.
 * With sequentially consistent atomics a reader either incremented its
 * counter before the writer's check (and the writer waits for it) or it sees
 * the new epoch on its re-check (and retries, then loads the new table).
 * Readers never wait, never lock and never allocate.
 */
#include "mmkit.h"
#include "sys.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

struct mmk_area {
    uintptr_t start, end; /* [start, end) */
    mmk_fault_fn fn;
    void *ctx;
};

struct entry {
    uintptr_t start, end;
    mmk_fault_fn fn;
    void *ctx;
    mmk_area *area;
};

struct table {
    size_t n;
    struct entry e[];
};

static struct table empty_table = { 0 };
static _Atomic(struct table *) cur_table = &empty_table;
static atomic_ulong epoch;
static atomic_long active[2];

static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static int installed;
static struct sigaction prev_segv, prev_bus;

/* Set while this thread runs an area handler: a nested fault is chained. */
static __thread int in_handler __attribute__((tls_model("initial-exec")));
/* The alternate stack mmk_fault_altstack() installed on this thread. */
static __thread void *altstack_map __attribute__((tls_model("initial-exec")));
static __thread size_t altstack_len __attribute__((tls_model("initial-exec")));

/* ---- reading side (signal handler) -------------------------------------- */

static const struct entry *lookup(const struct table *t, uintptr_t a)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct entry *e = &t->e[mid];
        if (a < e->start)
            hi = mid;
        else if (a >= e->end)
            lo = mid + 1;
        else
            return e;
    }
    return NULL;
}

static int fault_is_write(int signo, void *uctx)
{
    (void)signo;
#if defined(__x86_64__)
    const ucontext_t *uc = uctx;
    /* Page faults are trap 14; bit 1 of the error code is set for writes. */
    if (uc->uc_mcontext.gregs[REG_TRAPNO] != 14)
        return -1;
    return (uc->uc_mcontext.gregs[REG_ERR] & 2) ? 1 : 0;
#elif defined(__aarch64__)
    /* The kernel stores the exception syndrome in an esr_context record in
     * the signal frame's reserved area; WnR is bit 6 of a data abort. */
    const ucontext_t *uc = uctx;
    const unsigned char *p = (const unsigned char *)uc->uc_mcontext.__reserved;
    const unsigned char *end = p + sizeof(uc->uc_mcontext.__reserved);
    while (p + 8 <= end) {
        uint32_t magic, size;
        memcpy(&magic, p, 4);
        memcpy(&size, p + 4, 4);
        if (magic == 0 || size < 8)
            break;
        if (magic == 0x45535201u /* ESR_MAGIC */ && size >= 16) {
            uint64_t esr;
            memcpy(&esr, p + 8, 8);
            unsigned ec = (unsigned)(esr >> 26) & 0x3f;
            if (ec != 0x24 && ec != 0x25) /* data abort, lower/same EL */
                return -1;
            return (esr & (1u << 6)) ? 1 : 0;
        }
        p += size;
    }
    return -1;
#else
    (void)uctx;
    return -1;
#endif
}

/* Hand the fault to whatever handled the signal before mmkit. */
static void chain(int sig, siginfo_t *si, void *uctx)
{
    const struct sigaction *old = sig == SIGBUS ? &prev_bus : &prev_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
        return;
    }
    if (old->sa_handler == SIG_IGN && si->si_code <= 0)
        return; /* a kill() of an ignored signal: ignore it */
    if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        /*
         * Die of the original signal.  For a real fault, returning re-runs the
         * instruction, which faults again with the default action in place:
         * the process dies with the right signal and its core dump.  A signal
         * sent with kill() would not recur, so send it again; SA_NODEFER
         * means it is delivered as soon as this handler returns.
         */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0)
            raise(sig);
        return;
    }
    old->sa_handler(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    if (!in_handler) {
        unsigned long e;
        for (;;) {
            e = atomic_load(&epoch);
            atomic_fetch_add(&active[e & 1], 1);
            if (atomic_load(&epoch) == e)
                break;
            atomic_fetch_sub(&active[e & 1], 1);
        }
        const struct table *t = atomic_load(&cur_table);
        const struct entry *ent = lookup(t, (uintptr_t)si->si_addr);
        int r = MMK_FAULT_PASS;
        if (ent) {
            mmk_fault f = {
                .addr = si->si_addr,
                .signo = sig,
                .code = si->si_code,
                .write = fault_is_write(sig, uctx),
                .ucontext = uctx,
            };
            in_handler = 1;
            r = ent->fn(&f, ent->ctx);
            in_handler = 0;
        }
        atomic_fetch_sub(&active[e & 1], 1);
        if (r == MMK_FAULT_RETRY) {
            errno = saved_errno;
            return;
        }
    }
    chain(sig, si, uctx);
    errno = saved_errno;
}

/* ---- writing side -------------------------------------------------------- */

static int install_locked(void)
{
    if (installed)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_segv, old_bus;
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
        return -errno;
    if (sigaction(SIGBUS, &sa, &old_bus) != 0) {
        int r = -errno;
        sigaction(SIGSEGV, &old_segv, NULL);
        return r;
    }
    prev_segv = old_segv;
    prev_bus = old_bus;
    installed = 1;
    return 0;
}

int mmk_fault_install(void)
{
    pthread_mutex_lock(&writer_lock);
    int r = install_locked();
    pthread_mutex_unlock(&writer_lock);
    return r;
}

/* Wait until no handler that could have seen the previous table runs. */
static void grace_period_locked(void)
{
    unsigned long old = atomic_fetch_add(&epoch, 1);
    for (unsigned spins = 0; atomic_load(&active[old & 1]) != 0; spins++) {
        if (spins < 64)
            sched_yield();
        else {
            struct timespec ts = { 0, 50 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

static struct table *table_alloc(size_t n)
{
    struct table *t = malloc(sizeof *t + n * sizeof(struct entry));
    if (t)
        t->n = n;
    return t;
}

static void table_retire(struct table *t)
{
    if (t != &empty_table)
        free(t);
}

mmk_area *mmk_area_register(void *start, size_t len, mmk_fault_fn fn, void *ctx)
{
    if (len == 0 || fn == NULL) {
        errno = EINVAL;
        return NULL;
    }
    uintptr_t s = (uintptr_t)start;
    if (s + len < s) {
        errno = EOVERFLOW;
        return NULL;
    }
    if (in_handler) { /* would wait for the grace period of itself */
        errno = EDEADLK;
        return NULL;
    }
    mmk_area *a = malloc(sizeof *a);
    if (!a) {
        errno = ENOMEM;
        return NULL;
    }
    *a = (mmk_area){ .start = s, .end = s + len, .fn = fn, .ctx = ctx };

    pthread_mutex_lock(&writer_lock);
    int r = install_locked();
    if (r < 0) {
        pthread_mutex_unlock(&writer_lock);
        free(a);
        errno = -r;
        return NULL;
    }
    struct table *old = atomic_load(&cur_table);
    /* Find the insertion point; reject overlap with either neighbour. */
    size_t lo = 0, hi = old->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (old->e[mid].start < a->start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if ((lo > 0 && old->e[lo - 1].end > a->start) ||
        (lo < old->n && old->e[lo].start < a->end)) {
        pthread_mutex_unlock(&writer_lock);
        free(a);
        errno = EEXIST;
        return NULL;
    }
    struct table *t = table_alloc(old->n + 1);
    if (!t) {
        pthread_mutex_unlock(&writer_lock);
        free(a);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(t->e, old->e, lo * sizeof(struct entry));
    t->e[lo] = (struct entry){ a->start, a->end, fn, ctx, a };
    memcpy(t->e + lo + 1, old->e + lo, (old->n - lo) * sizeof(struct entry));
    atomic_store(&cur_table, t);
    grace_period_locked();
    table_retire(old);
    pthread_mutex_unlock(&writer_lock);
    return a;
}

int mmk_area_unregister(mmk_area *area)
{
    if (!area)
        return -EINVAL;
    if (in_handler)
        return -EDEADLK;
    pthread_mutex_lock(&writer_lock);
    struct table *old = atomic_load(&cur_table);
    size_t i = 0;
    while (i < old->n && old->e[i].area != area)
        i++; /* linear, but register/unregister are not the hot path */
    if (i == old->n) {
        pthread_mutex_unlock(&writer_lock);
        return -EINVAL;
    }
    struct table *t = old->n == 1 ? &empty_table : table_alloc(old->n - 1);
    if (!t) {
        pthread_mutex_unlock(&writer_lock);
        return -ENOMEM;
    }
    if (t != &empty_table) {
        memcpy(t->e, old->e, i * sizeof(struct entry));
        memcpy(t->e + i, old->e + i + 1, (old->n - i - 1) * sizeof(struct entry));
    }
    atomic_store(&cur_table, t);
    grace_period_locked();
    table_retire(old);
    pthread_mutex_unlock(&writer_lock);
    free(area);
    return 0;
}

size_t mmk_fault_area_count(void)
{
    return atomic_load(&cur_table)->n;
}

/* ---- alternate signal stacks -------------------------------------------- */

int mmk_fault_altstack(size_t size)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return -errno;
    if (!(cur.ss_flags & SS_DISABLE))
        return 0; /* this thread already has one */
    size_t page = mmk__page_size();
    if (size == 0)
        size = 64 * 1024;
    if (size < (size_t)MINSIGSTKSZ)
        size = MINSIGSTKSZ;
    size = (size + page - 1) & ~(page - 1);
    void *map;
    int r = mmk__sys_mmap(&map, NULL, size + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r < 0)
        return r;
    /* The lowest page is a guard: an overflow of the signal stack faults
     * instead of running into whatever lies below. */
    r = mmk__sys_mprotect(map, page, PROT_NONE);
    if (r < 0) {
        mmk__sys_munmap(map, size + page);
        return r;
    }
    stack_t ss = { .ss_sp = (char *)map + page, .ss_size = size, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) {
        r = -errno;
        mmk__sys_munmap(map, size + page);
        return r;
    }
    altstack_map = map;
    altstack_len = size + page;
    return 0;
}

int mmk_fault_altstack_free(void)
{
    if (!altstack_map)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return -errno;
    if (cur.ss_flags & SS_ONSTACK)
        return -EBUSY;
    stack_t off = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    if (sigaltstack(&off, NULL) != 0)
        return -errno;
    mmk__sys_munmap(altstack_map, altstack_len);
    altstack_map = NULL;
    altstack_len = 0;
    return 0;
}
