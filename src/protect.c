/*
 * protect.c - write-protect a large resident run fast, by moving its page
 * table entries away instead of rewriting them.
 *
 * mprotect(PROT_READ) of a resident range visits and rewrites every page
 * table entry: about 25 ms per GiB here, close to what fork() costs.  For a
 * snapshot we do not need the entries at all.  mremap(MREMAP_DONTUNMAP)
 * moves them to a scratch range - whole page-table pages at a time when both
 * ranges have the same offset within a 2 MiB unit - and leaves the source
 * mapping in place with no entries.  mprotect of an empty range only edits
 * the mapping.  Later reads of the source refill it from the memfd (minor
 * faults, with fault-around); writes fault into mmkit's handler as they
 * must.  The scratch range still maps the pages writable, but no pointer to
 * it exists outside this file, and a background thread (the reaper) unmaps
 * it: the costly part, dropping the moved entries, runs off the caller's
 * path, on another CPU.  Until it is dropped, a scratch range may hold two
 * mappings, so the engine charges it two; when the mappings near the budget
 * the engine drops the queued ranges itself, at once (mmk__protect_drain).
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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PMD_SIZE ((uintptr_t)2 << 20)

/* Owner of scratch ranges in the view space: never a view. */
char mmk__scratch_owner;

struct reap {
    char *space;     /* what mmk__space_alloc gave */
    size_t space_len;
};

#define QUEUE 64
static struct reap queue[QUEUE]; /* under the engine lock */
static unsigned q_head, q_len;
static unsigned in_flight;       /* dequeued by the reaper, not yet given back */
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
        in_flight = 1;
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

unsigned mmk__protect_pending(void)
{
    return q_len + in_flight;
}

void mmk__protect_drain(void)
{
    while (q_len) {
        struct reap r = queue[q_head];
        q_head = (q_head + 1) % QUEUE;
        q_len--;
        scrap(&r);
        give_back(&r);
    }
}

void mmk__protect_forked(void)
{
    /* The reaper is not inherited by a child of fork(). */
    reaper_running = 0;
    q_len = 0;
    in_flight = 0;
}

int mmk__protect_by_move(char *addr, size_t len)
{
    uintptr_t offset = (uintptr_t)addr & (PMD_SIZE - 1);
    char *space;
    size_t space_len = len + PMD_SIZE;
    int r = mmk__space_alloc(space_len, &mmk__scratch_owner, &space);
    if (r < 0)
        return r;
    void *moved;
    r = mmk__sys_mremap(&moved, addr, len, len,
                        MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, space + offset);
    if (r < 0) {
        /* Not one mapping, or an old kernel: let the caller mprotect. */
        mmk__space_free(space, space_len);
        return r;
    }
    r = mmk__sys_mprotect(addr, len, PROT_READ);
    struct reap item = { space, space_len };
    if (q_len < QUEUE && start_reaper() == 0) {
        queue[(q_head + q_len) % QUEUE] = item;
        q_len++;
        atomic_fetch_add(&work, 1);
        mmk__sys_futex_wake(&work, 1);
    } else { /* no reaper, or a full queue: do its work here */
        scrap(&item);
        give_back(&item);
    }
    return r;
}
