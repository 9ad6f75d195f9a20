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
 *
 * Teardown cannot fail.  Unregistering needs a new chunk (the old one minus
 * the area) and a new index; both are taken from spares that every writer
 * keeps ready: one spare chunk, and a spare index at least as large as the
 * current one.  The chunk and index an unregister replaces become the next
 * spares once the grace period is over, so mmk_area_unregister never
 * allocates; mmk_area_register, which may fail anyway, allocates the spare
 * index when the table outgrows it.
 *
 * Handles.  An mmk_area handle is not a pointer to memory but a number that
 * is never handed out twice (a 64-bit counter), so a stale handle - one
 * unregistered already, whose address range may now belong to another area -
 * is recognised and refused with -EINVAL instead of removing the newcomer.
 *
 * fork().  A child of fork() has one thread, but inherits the epoch
 * counters of every handler that was running in the parent: a grace period
 * in the child would wait for them forever.  The child therefore resets the
 * counters (keeping only its own thread's, if it forked from inside a
 * handler).  The writer lock is held across fork() by the atfork handlers
 * (so the child never sees a half-done change of the spares), and taken
 * before the region engine's lock: a writer's grace period may wait for a
 * region handler, which may wait for the engine lock, so the engine lock
 * must never be held while waiting for the writer lock.  The region engine
 * calls mmk__fault_fork_prepare() first in its own prepare handler for this.
 */
#include "mmkit.h"
#include "fault.h"
#include "sys.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

struct entry {
    uintptr_t start, end; /* [start, end) */
    mmk_fault_fn fn;
    void *ctx;
    uint64_t id;          /* the area's handle, never reused */
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
    size_t cap; /* slots allocated */
    struct slot s[];
};

static struct table empty_table = { 0, 0, 0 };
static _Atomic(struct table *) cur_table = &empty_table;
static atomic_ulong epoch;
static atomic_long active[2];

static pthread_mutex_t writer_lock = PTHREAD_MUTEX_INITIALIZER;
static int installed;
static struct sigaction prev_segv, prev_bus;
/* The previous handler had SA_RESETHAND and ran once: it is SIG_DFL now
 * (index 0 SIGSEGV, 1 SIGBUS). */
static atomic_int prev_spent[2];

/* Under writer_lock: what unregister needs, ready (see the top). */
static struct chunk *spare_chunk;
static struct table *spare_table; /* cap >= cur_table->nslots */
static uint64_t last_id;
static unsigned fork_depth; /* atfork: prepare handlers run, not yet undone */

/* Set while this thread runs an area handler: a nested fault is chained. */
static __thread int in_handler __attribute__((tls_model("initial-exec")));
/* The epoch whose counter this thread raised while in_handler (for fork). */
static __thread unsigned long handler_epoch __attribute__((tls_model("initial-exec")));
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

/*
 * Hand the fault to whatever handled the signal before mmkit, as the kernel
 * would have delivered it: with the handler's sa_mask (and the signal itself
 * unless SA_NODEFER) blocked while it runs, and with SA_RESETHAND honoured -
 * the first delivery makes the previous disposition SIG_DFL for good (mmkit
 * keeps handling its own areas).
 */
static void chain(int sig, siginfo_t *si, void *uctx)
{
    const struct sigaction *old = sig == SIGBUS ? &prev_bus : &prev_segv;
    int is_handler = (old->sa_flags & SA_SIGINFO) ||
                     (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN);
    int dfl = old->sa_handler == SIG_DFL && !(old->sa_flags & SA_SIGINFO);
    if (is_handler && (old->sa_flags & SA_RESETHAND) &&
        atomic_exchange(&prev_spent[sig == SIGBUS], 1) != 0) {
        is_handler = 0; /* spent: the disposition is SIG_DFL now */
        dfl = 1;
    }
    if (is_handler) {
        sigset_t mask = old->sa_mask, saved;
        if (!(old->sa_flags & SA_NODEFER))
            sigaddset(&mask, sig);
        int masked = mmk__sys_sigmask(SIG_BLOCK, &mask, &saved) == 0;
        if (old->sa_flags & SA_SIGINFO)
            old->sa_sigaction(sig, si, uctx);
        else
            old->sa_handler(sig);
        if (masked)
            mmk__sys_sigmask(SIG_SETMASK, &saved, NULL);
        return;
    }
    if (!dfl && si->si_code <= 0)
        return; /* a kill() of an ignored signal: ignore it */
    /*
     * Die of the original signal.  For a real fault, returning re-runs the
     * instruction, which faults again with the default action in place: the
     * process dies with the right signal and its core dump.  A signal sent
     * with kill() would not recur, so send it again; SA_NODEFER means it is
     * delivered as soon as this handler returns.
     */
    mmk__sys_sigdefault(sig);
    if (si->si_code <= 0)
        mmk__sys_raise(sig);
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
            handler_epoch = e;
            in_handler = 1;
            atomic_signal_fence(memory_order_seq_cst);
            r = ent->fn(&f, ent->ctx);
            atomic_signal_fence(memory_order_seq_cst);
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
    int r = mmk__sys_sigaction(SIGSEGV, &sa, &old_segv);
    if (r < 0)
        return r;
    r = mmk__sys_sigaction(SIGBUS, &sa, &old_bus);
    if (r < 0) {
        mmk__sys_sigaction(SIGSEGV, &old_segv, NULL);
        return r;
    }
    prev_segv = old_segv;
    prev_bus = old_bus;
    atomic_store(&prev_spent[0], 0);
    atomic_store(&prev_spent[1], 0);
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
            mmk__sys_yield();
        else
            mmk__sys_nanosleep(50 * 1000);
    }
}

int mmk__fault_in_handler(void)
{
    return in_handler;
}

int mmk__fault_synchronize(void)
{
    if (in_handler)
        return -EDEADLK;
    pthread_mutex_lock(&writer_lock);
    grace_period_locked();
    pthread_mutex_unlock(&writer_lock);
    return 0;
}

static struct table *table_alloc(size_t cap)
{
    struct table *t = malloc(sizeof *t + cap * sizeof(struct slot));
    if (t)
        t->cap = cap;
    return t;
}

/* An index replaced by a publish is no longer read by anyone: keep the
 * larger of it and the spare as the spare, free the other. */
static void retire_table_locked(struct table *old)
{
    if (old == &empty_table)
        return;
    if (!spare_table || old->cap > spare_table->cap) {
        free(spare_table);
        spare_table = old;
    } else {
        free(old);
    }
}

/* The same for a replaced chunk. */
static void retire_chunk_locked(struct chunk *c)
{
    if (!c)
        return;
    if (!spare_chunk)
        spare_chunk = c;
    else
        free(c);
}

/* Publish t, wait until no handler can see what it replaces, retire that. */
static void publish_locked(struct table *t, struct chunk *replaced)
{
    struct table *old = atomic_load(&cur_table);
    atomic_store(&cur_table, t);
    grace_period_locked();
    retire_table_locked(old);
    retire_chunk_locked(replaced);
}

/* Fill t (t->cap large enough) with old's slots, slot k and the replace-1
 * after it replaced by `with` (0, 1 or 2 slots). */
static void table_splice(struct table *t, const struct table *old, size_t k, size_t replace,
                         const struct slot *with, size_t nwith, size_t nareas)
{
    t->nslots = old->nslots - replace + nwith;
    t->nareas = nareas;
    memcpy(t->s, old->s, k * sizeof(struct slot));
    memcpy(t->s + k, with, nwith * sizeof(struct slot));
    memcpy(t->s + k + nwith, old->s + k + replace, (old->nslots - k - replace) * sizeof(struct slot));
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
    struct chunk *c1 = malloc(sizeof *c1), *c2 = malloc(sizeof *c2);
    struct table *t = NULL, *new_spare = NULL;
    int err = ENOMEM;
    if (!c1 || !c2)
        goto fail;

    pthread_mutex_lock(&writer_lock);
    int r = install_locked();
    if (r < 0) {
        err = -r;
        goto fail_locked;
    }
    if (!spare_chunk) { /* what a later unregister needs */
        spare_chunk = malloc(sizeof *spare_chunk);
        if (!spare_chunk)
            goto fail_locked;
    }
    struct entry ent = { s, s + len, fn, ctx, last_id + 1 };
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
    if ((prev && prev->end > s) || (next && next->start < ent.end)) {
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
    size_t replace = c ? 1 : 0, nslots = old->nslots - replace + nwith;
    t = table_alloc(nslots);
    if (!t)
        goto fail_locked;
    /* A later unregister builds its index in the spare: it must hold the
     * index this call makes (doubling keeps the reallocations rare). */
    if (!spare_table || spare_table->cap < nslots) {
        new_spare = table_alloc(2 * nslots);
        if (!new_spare)
            goto fail_locked;
        free(spare_table);
        spare_table = new_spare;
    }
    table_splice(t, old, k, replace, with, nwith, old->nareas + 1);
    last_id = ent.id;
    publish_locked(t, c);
    pthread_mutex_unlock(&writer_lock);
    return (mmk_area *)(uintptr_t)ent.id;

fail_locked:
    pthread_mutex_unlock(&writer_lock);
fail:
    free(t);
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
    uint64_t id = (uint64_t)(uintptr_t)area;
    pthread_mutex_lock(&writer_lock);
    struct table *old = atomic_load(&cur_table);
    /* Find it by its number: a stale handle matches nothing. */
    size_t k = 0, i = 0;
    for (; k < old->nslots; k++) {
        const struct chunk *c = old->s[k].c;
        for (i = 0; i < c->n && c->e[i].id != id; i++)
            ;
        if (i < c->n)
            break;
    }
    if (k == old->nslots) {
        pthread_mutex_unlock(&writer_lock);
        return -EINVAL;
    }
    struct chunk *c = old->s[k].c;
    struct slot with = { 0, NULL };
    size_t nwith = 0;
    if (c->n > 1) {
        /* The spare exists: register made one, and every change since
         * retired a chunk into it. */
        struct chunk *nc = spare_chunk;
        spare_chunk = NULL;
        nc->n = c->n - 1;
        memcpy(nc->e, c->e, i * sizeof(struct entry));
        memcpy(nc->e + i, c->e + i + 1, (c->n - i - 1) * sizeof(struct entry));
        with = (struct slot){ nc->e[0].start, nc };
        nwith = 1;
    }
    struct table *t = &empty_table;
    if (old->nslots > 1 || nwith) {
        /* The spare holds at least old->nslots slots. */
        t = spare_table;
        spare_table = NULL;
        table_splice(t, old, k, 1, &with, nwith, old->nareas - 1);
    }
    publish_locked(t, c);
    pthread_mutex_unlock(&writer_lock);
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
    int r = mmk__sys_sigaltstack(NULL, &cur);
    if (r < 0)
        return r;
    if (!(cur.ss_flags & SS_DISABLE))
        return 0; /* this thread already has one */
    size_t page = mmk__page_size();
    if (size == 0)
        size = 64 * 1024;
    if (size < (size_t)MINSIGSTKSZ)
        size = MINSIGSTKSZ;
    if (size > SIZE_MAX / 2)
        return -ENOMEM;
    size = (size + page - 1) & ~(page - 1);
    void *map;
    r = mmk__sys_mmap(&map, NULL, size + page, PROT_READ | PROT_WRITE,
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
    r = mmk__sys_sigaltstack(&ss, NULL);
    if (r < 0) {
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
    int r = mmk__sys_sigaltstack(NULL, &cur);
    if (r < 0)
        return r;
    if (cur.ss_flags & SS_ONSTACK)
        return -EBUSY;
    stack_t off = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    r = mmk__sys_sigaltstack(&off, NULL);
    if (r < 0)
        return r;
    mmk__sys_munmap(altstack_map, altstack_len);
    altstack_map = NULL;
    altstack_len = 0;
    return 0;
}

/* ---- fork ---------------------------------------------------------------- */

/*
 * The atfork handlers, registered by the constructor below and also called
 * by the region engine's own handlers (before it takes its lock, after it
 * released it), so that the writer lock always comes first whatever order
 * the handlers were registered in.  fork() runs the handlers of one fork at
 * a time, on the forking thread; the depth makes the nested calls no-ops.
 */
void mmk__fault_fork_prepare(void)
{
    if (fork_depth++ == 0)
        pthread_mutex_lock(&writer_lock);
}

void mmk__fault_fork_parent(void)
{
    if (fork_depth > 0 && --fork_depth == 0)
        pthread_mutex_unlock(&writer_lock);
}

void mmk__fault_fork_child(void)
{
    if (fork_depth == 0 || --fork_depth != 0)
        return;
    /* Only this thread exists: no other handler runs, whatever the parent's
     * counters said.  If this thread forked from inside a handler, its own
     * count stays. */
    atomic_store(&active[0], 0);
    atomic_store(&active[1], 0);
    if (in_handler)
        atomic_store(&active[handler_epoch & 1], 1);
    pthread_mutex_init(&writer_lock, NULL);
}

__attribute__((constructor)) static void fault_atfork_init(void)
{
    pthread_atfork(mmk__fault_fork_prepare, mmk__fault_fork_parent, mmk__fault_fork_child);
}
