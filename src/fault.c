/*
 * fault.c - the fault router: one SIGSEGV/SIGBUS handler for the process,
 * dispatching to per-range handlers.
 *
 * The area table is immutable once published: a sorted index of chunks, each
 * a sorted array of up to CHUNK_MAX areas (a two-level B-tree).  Writers
 * (register, unregister) build a new index and one new chunk under a mutex,
 * publish the index with one atomic store and then wait for a grace period
 * before freeing the old index, the replaced chunk and any removed area: a
 * handler that may still be reading them, or running the removed area's
 * callback, must be done first.  A change copies O(areas / CHUNK_MAX +
 * CHUNK_MAX) words, so registering thousands of areas stays cheap; a lookup
 * is two binary searches.
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

#define CHUNK_MAX 64

struct chunk {
    size_t n;
    struct entry e[CHUNK_MAX];
};

struct slot {
    uintptr_t start; /* the chunk's first area's start */
    struct chunk *c;
};

struct table {
    size_t nslots, nareas;
    struct slot s[];
};

static struct table empty_table = { 0, 0 };
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

/* The number of slots of t starting at or before a (binary search). */
static size_t slots_upto(const struct table *t, uintptr_t a)
{
    size_t lo = 0, hi = t->nslots;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->s[mid].start <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The number of entries of c starting at or before a (binary search). */
static size_t entries_upto(const struct chunk *c, uintptr_t a)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->e[mid].start <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct entry *lookup(const struct table *t, uintptr_t a)
{
    size_t k = slots_upto(t, a);
    if (k == 0)
        return NULL;
    const struct chunk *c = t->s[k - 1].c;
    size_t i = entries_upto(c, a);
    if (i == 0 || a >= c->e[i - 1].end)
        return NULL;
    return &c->e[i - 1];
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
        mmk__sys_sigdefault(sig);
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

static struct table *table_alloc(size_t nslots, size_t nareas)
{
    struct table *t = malloc(sizeof *t + nslots * sizeof(struct slot));
    if (t) {
        t->nslots = nslots;
        t->nareas = nareas;
    }
    return t;
}

/* Publish t, wait until no handler can see what it replaces, free that. */
static void publish_locked(struct table *t, struct chunk *replaced)
{
    struct table *old = atomic_load(&cur_table);
    atomic_store(&cur_table, t);
    grace_period_locked();
    if (old != &empty_table)
        free(old);
    free(replaced);
}

/* A new index: old's slots with slot k replaced by `with` (0, 1 or 2
 * slots). */
static struct table *table_splice(const struct table *old, size_t k, size_t replace,
                                  const struct slot *with, size_t nwith, size_t nareas)
{
    size_t n = old->nslots - replace + nwith;
    struct table *t = table_alloc(n, nareas);
    if (!t)
        return NULL;
    memcpy(t->s, old->s, k * sizeof(struct slot));
    memcpy(t->s + k, with, nwith * sizeof(struct slot));
    memcpy(t->s + k + nwith, old->s + k + replace, (old->nslots - k - replace) * sizeof(struct slot));
    return t;
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
    struct chunk *c1 = malloc(sizeof *c1), *c2 = malloc(sizeof *c2);
    struct table *t = NULL;
    int err = ENOMEM;
    if (!a || !c1 || !c2)
        goto fail;
    *a = (mmk_area){ .start = s, .end = s + len, .fn = fn, .ctx = ctx };
    struct entry ent = { a->start, a->end, fn, ctx, a };

    pthread_mutex_lock(&writer_lock);
    int r = install_locked();
    if (r < 0) {
        err = -r;
        goto fail_locked;
    }
    struct table *old = atomic_load(&cur_table);
    /* The chunk that takes the area: the last one starting at or before it
     * (the first one if it comes before everything). */
    size_t k = slots_upto(old, s), i = 0;
    if (k > 0)
        k--;
    struct chunk *c = old->nslots ? old->s[k].c : NULL;
    if (c)
        i = entries_upto(c, s);
    /* Reject overlap with either neighbour, wherever it sits. */
    const struct entry *prev = NULL, *next = NULL;
    if (c && i > 0)
        prev = &c->e[i - 1];
    if (c && i < c->n)
        next = &c->e[i];
    else if (c && k + 1 < old->nslots)
        next = &old->s[k + 1].c->e[0];
    if ((prev && prev->end > s) || (next && next->start < a->end)) {
        err = EEXIST;
        goto fail_locked;
    }
    struct slot with[2];
    size_t nwith = 1;
    if (!c) {
        c1->n = 1;
        c1->e[0] = ent;
        with[0] = (struct slot){ s, c1 };
        free(c2);
        c2 = NULL;
    } else {
        struct entry merged[CHUNK_MAX + 1];
        memcpy(merged, c->e, i * sizeof ent);
        merged[i] = ent;
        memcpy(merged + i + 1, c->e + i, (c->n - i) * sizeof ent);
        size_t n = c->n + 1, first = n <= CHUNK_MAX ? n : n / 2;
        c1->n = first;
        memcpy(c1->e, merged, first * sizeof ent);
        with[0] = (struct slot){ c1->e[0].start, c1 };
        if (first < n) { /* full: split in two */
            c2->n = n - first;
            memcpy(c2->e, merged + first, c2->n * sizeof ent);
            with[1] = (struct slot){ c2->e[0].start, c2 };
            nwith = 2;
        } else {
            free(c2);
            c2 = NULL;
        }
    }
    t = table_splice(old, k, c ? 1 : 0, with, nwith, old->nareas + 1);
    if (!t)
        goto fail_locked;
    publish_locked(t, c);
    pthread_mutex_unlock(&writer_lock);
    return a;

fail_locked:
    pthread_mutex_unlock(&writer_lock);
fail:
    free(a);
    free(c1);
    free(c2);
    errno = err;
    return NULL;
}

int mmk_area_unregister(mmk_area *area)
{
    if (!area)
        return -EINVAL;
    if (in_handler)
        return -EDEADLK;
    struct chunk *nc = malloc(sizeof *nc);
    if (!nc)
        return -ENOMEM;
    pthread_mutex_lock(&writer_lock);
    struct table *old = atomic_load(&cur_table);
    /* Find it by pointer, without reading *area: it may not be ours. */
    size_t k = 0, i = 0;
    for (; k < old->nslots; k++) {
        const struct chunk *c = old->s[k].c;
        for (i = 0; i < c->n && c->e[i].area != area; i++)
            ;
        if (i < c->n)
            break;
    }
    if (k == old->nslots) {
        pthread_mutex_unlock(&writer_lock);
        free(nc);
        return -EINVAL;
    }
    struct chunk *c = old->s[k].c;
    struct slot with = { 0, nc };
    size_t nwith = 0;
    if (c->n > 1) {
        nc->n = c->n - 1;
        memcpy(nc->e, c->e, i * sizeof(struct entry));
        memcpy(nc->e + i, c->e + i + 1, (c->n - i - 1) * sizeof(struct entry));
        with.start = nc->e[0].start;
        nwith = 1;
    }
    struct table *t = old->nslots == 1 && nwith == 0 ? &empty_table
                                                     : table_splice(old, k, 1, &with, nwith,
                                                                    old->nareas - 1);
    if (!t) {
        pthread_mutex_unlock(&writer_lock);
        free(nc);
        return -ENOMEM;
    }
    publish_locked(t, c);
    pthread_mutex_unlock(&writer_lock);
    if (nwith == 0)
        free(nc);
    free(area);
    return 0;
}

size_t mmk_fault_area_count(void)
{
    return atomic_load(&cur_table)->nareas;
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
