/*
 * protect.c - write-protect a large resident run fast, by moving its page
 * table entries away instead of rewriting them.
 *
 * mprotect(PROT_READ) of a resident range visits and rewrites every page
 * table entry: 8-14 ms per 256 MiB on a loaded machine, close to what fork()
 * costs.  For a snapshot we do not need the entries at all: the contents
 * live in the pool memfd, the entries only cache where they are.  Three
 * methods, chosen at run time (docs/snapshot-speed.md has the numbers):
 *
 *   move       a plain mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of the run into
 *              a scratch range with the same offset within a 2 MiB unit, so
 *              the kernel moves whole page-table pages (every kernel since
 *              4.20/5.x on x86-64 and arm64; older ones move entry by entry,
 *              no slower than the others).  The run is left a hole; view.c
 *              maps it afresh read-only with MAP_FIXED_NOREPLACE (one mapping,
 *              no entries), so a mapping someone else placed in the hole
 *              meanwhile is never destroyed.  The default.
 *   (MREMAP_DONTUNMAP + mprotect was a third method; it was dropped after
 *   the model test, forced onto it, saw the kernel hold one mapping more
 *   in a view than the engine counted.  See docs/snapshot-speed.md.)
 *   mprotect   the kernel rewrites every entry.  Always works.
 *
 * MMKIT_PROTECT=move|mprotect in the environment (read at setup)
 * or mmk__protect_force() forces one method for every run of any length, so
 * tests run every path on every machine.  A method the kernel refuses
 * (EINVAL, ENOSYS) is not tried again; a run it cannot take (EFAULT: the run
 * is several mappings) falls through to the next method.
 *
 * The scratch range still maps the pages, but no pointer to it exists
 * outside this file, and a background thread (the reaper) turns it back into
 * reservation: the costly part, dropping the moved entries, runs off the
 * caller's path, on another CPU.  Until it is dropped, a scratch range holds
 * the moved mappings and splits the reservation around it, so the engine
 * charges it 2 plus the breaks the run had inside (mmk__protect_pending);
 * when the mappings near the budget the engine drops the queued ranges
 * itself, at once (mmk__protect_drain).
 *
 * The queue is guarded by the engine lock (the reaper takes it to dequeue
 * and to give the range back, not while it drops the entries); the reaper
 * sleeps on a futex.  Nothing here allocates or takes another lock, so the
 * fault handler may drain the queue.
 */
#include "view.h"
#include "sys.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PMD_SIZE ((uintptr_t)2 << 20)

/* Owner of scratch ranges in the view space: never a view. */
char mmk__scratch_owner;
void (*mmk__protect_hole_hook)(void *addr, size_t len);

struct reap {
    char *space;     /* what mmk__space_alloc gave */
    size_t space_len;
    long charge;     /* mappings it may hold until dropped */
};

#define QUEUE 64
static struct reap queue[QUEUE]; /* under the engine lock */
static unsigned q_head, q_len;
static long queued_charge;       /* sum of the queue's charges */
static long in_flight;           /* charge dequeued by the reaper, not yet given back */
static atomic_int work;          /* futex word: bumped for every range queued */
static int reaper_running;

static void scrap(const struct reap *r)
{
    void *out;
    /* Back to PROT_NONE reservation: drops the moved entries. */
    mmk__sys_mmap(&out, r->space, r->space_len, PROT_NONE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

/* The range is PROT_NONE again: give it back.  Its two ends may stay as
 * breaks until the kernel is next asked.  pre: lock held. */
static void give_back(const struct reap *r)
{
    mmk__space_free(r->space, r->space_len);
    mmk__engine_orphan_breaks(2);
}

static void *reaper(void *arg)
{
    (void)arg;
    for (;;) {
        mmk__vm_lock();
        if (q_len == 0) {
            int seen = atomic_load(&work);
            mmk__vm_unlock();
            mmk__sys_futex_wait(&work, seen);
            continue;
        }
        struct reap r = queue[q_head];
        q_head = (q_head + 1) % QUEUE;
        q_len--;
        queued_charge -= r.charge;
        in_flight = r.charge;
        mmk__vm_unlock();
        scrap(&r);
        mmk__vm_lock();
        give_back(&r);
        in_flight = 0;
        mmk__vm_unlock();
    }
    return NULL;
}

/* Start the reaper once; it never touches region memory, so it blocks every
 * signal it can.  pre: lock held (not in a signal handler). */
static int start_reaper(void)
{
    if (reaper_running)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    mmk__sys_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int e = pthread_create(&t, &attr, reaper, NULL);
    pthread_attr_destroy(&attr);
    mmk__sys_sigmask(SIG_SETMASK, &old, NULL);
    if (e)
        return -e;
    reaper_running = 1;
    return 0;
}

long mmk__protect_pending(void)
{
    return queued_charge + in_flight;
}

void mmk__protect_drain(void)
{
    while (q_len) {
        struct reap r = queue[q_head];
        q_head = (q_head + 1) % QUEUE;
        q_len--;
        queued_charge -= r.charge;
        scrap(&r);
        give_back(&r);
    }
}

void mmk__protect_forked(void)
{
    /* The reaper is not inherited by a child of fork(). */
    reaper_running = 0;
    q_len = 0;
    queued_charge = 0;
    in_flight = 0;
}

/* ---- choosing the method ---------------------------------------------------- */

static int forced = -1;          /* MMK__PROTECT_* or -1: automatic */
static int refused[MMK__PROTECT_METHODS]; /* the kernel refused it (EINVAL, ENOSYS) */

static const char *const names[MMK__PROTECT_METHODS] = { "move", "mprotect" };

const char *mmk__protect_name(int method)
{
    return method >= 0 && method < MMK__PROTECT_METHODS ? names[method] : "?";
}

static int forced_by_call;
static size_t span_gap = MMK__PROTECT_SPAN_GAP;
static int gap_by_call;

void mmk__protect_configure(void)
{
    const char *env = getenv("MMKIT_PROTECT");
    if (env && !forced_by_call)
        for (int m = 0; m < MMK__PROTECT_METHODS; m++)
            if (strcmp(env, names[m]) == 0)
                forced = m;
    env = getenv("MMKIT_PROTECT_BATCH");
    if (env && !gap_by_call) {
        if (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)
            span_gap = 0;
        else if (strcmp(env, "max") == 0)
            span_gap = SIZE_MAX;
    }
}

size_t mmk__protect_span_gap(void)
{
    return span_gap;
}

void mmk__protect_force_gap(size_t gap)
{
    gap_by_call = gap != (size_t)-2;
    span_gap = gap_by_call ? gap : MMK__PROTECT_SPAN_GAP;
}

void mmk__protect_force(int method)
{
    forced_by_call = 1;
    forced = method >= 0 && method < MMK__PROTECT_METHODS ? method : -1;
}

int mmk__protect_forced(void)
{
    return forced;
}

int mmk__protect_method(void)
{
    if (forced >= 0)
        return forced;
    for (int m = 0; m < MMK__PROTECT_MPROTECT; m++)
        if (!refused[m])
            return m;
    return MMK__PROTECT_MPROTECT;
}

size_t mmk__protect_min_pages(void)
{
    return forced >= 0 ? 1 : MMK__PROTECT_MIN_PAGES;
}

static void note_refusal(int method, int r)
{
    if (r == -EINVAL || r == -ENOSYS)
        refused[method] = 1;
}

/* ---- moving a run away -------------------------------------------------------- */

/* Queue a scratch range for the reaper (or drop it here). */
static void queue_scratch(char *space, size_t space_len, long charge)
{
    struct reap item = { space, space_len, charge };
    if (q_len < QUEUE && start_reaper() == 0) {
        queue[(q_head + q_len) % QUEUE] = item;
        q_len++;
        queued_charge += charge;
        atomic_fetch_add(&work, 1);
        mmk__sys_futex_wake(&work, 1);
    } else { /* no reaper, or a full queue: do its work here */
        scrap(&item);
        give_back(&item);
    }
}

/* Move the entries of [addr, addr+len) to a fresh scratch range, with or
 * without leaving the mapping behind.  0, or -errno with nothing changed. */
static int move_to_scratch(char *addr, size_t len, long inner_breaks, int flags)
{
    uintptr_t offset = (uintptr_t)addr & (PMD_SIZE - 1);
    char *space;
    size_t space_len = len + PMD_SIZE;
    /* The reaper's stack first: a thread started between the move and the
     * fill would have its stack placed in the hole. */
    start_reaper();
    int r = mmk__space_alloc(space_len, &mmk__scratch_owner, &space);
    if (r < 0)
        return r;
    void *moved;
    r = mmk__sys_mremap(&moved, addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | flags,
                        space + offset);
    if (r < 0) {
        mmk__space_free(space, space_len);
        return r;
    }
    queue_scratch(space, space_len, 2 + inner_breaks);
    return 0;
}

int mmk__protect_move_away(char *addr, size_t len, long inner_breaks)
{
    int r = move_to_scratch(addr, len, inner_breaks, 0);
    note_refusal(MMK__PROTECT_MOVE, r);
    return r;
}
