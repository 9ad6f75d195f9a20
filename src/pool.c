/*
 * pool.c - the page pool ("physical memory" for regions and snapshots) and
 * the engine lock.
 *
 * The pool is one memfd.  It is mapped once, in full, as the pool window, so
 * the engine can copy any pool page without mapping it.  The window, the
 * refcount array, the free stack and the node arena are reserved once with
 * MAP_NORESERVE: they cost address space only, until touched, and they never
 * move, so the fault handler can use them without taking any allocator lock.
 */
#include "vm.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct mmk__pool mmk__pool = { .fd = -1 };

/* Start of the pages freed since the last mmk__pool_flush (see there). */
static uint32_t flush_mark;

/* The pool window: 1 TiB of address space, 2^28 pages of 4 KiB. */
#define POOL_WINDOW_BYTES (1ull << 40)
/* The node arena: up to 2^26 nodes (9 GiB of address space). */
#define MAX_NODES (1u << 26)
/* The memfd grows in steps of at least this many bytes. */
#define GROW_MIN_BYTES (64ull << 20)

/* ---- lock ------------------------------------------------------------------ */

/*
 * A three-state futex mutex (0 free, 1 locked, 2 locked with waiters).  It is
 * taken from signal handlers, so it must be async-signal-safe: atomics and
 * the futex system call only.  `held` lets the handler detect a fault raised
 * by the engine itself on a thread that holds the lock.
 */
static atomic_int vm_lock_word;
static __thread int vm_lock_mine __attribute__((tls_model("initial-exec")));

static void futex_wait(atomic_int *w, int val)
{
    syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_int *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/*
 * `mine` is set before the lock is taken and cleared after it is released,
 * so a fault raised on this thread anywhere inside a locked section (by a
 * signal handler that touches region memory) is seen as "inside the engine"
 * and passed on, never left waiting for a lock its own thread holds.
 */
void mmk__vm_lock(void)
{
    int saved = errno;
    vm_lock_mine = 1;
    atomic_signal_fence(memory_order_seq_cst);
    int c = 0;
    if (!atomic_compare_exchange_strong(&vm_lock_word, &c, 1)) {
        if (c != 2)
            c = atomic_exchange(&vm_lock_word, 2);
        while (c != 0) {
            futex_wait(&vm_lock_word, 2);
            c = atomic_exchange(&vm_lock_word, 2);
        }
    }
    errno = saved;
}

void mmk__vm_unlock(void)
{
    int saved = errno;
    if (atomic_fetch_sub(&vm_lock_word, 1) != 1) {
        atomic_store(&vm_lock_word, 0);
        futex_wake(&vm_lock_word);
    }
    atomic_signal_fence(memory_order_seq_cst);
    vm_lock_mine = 0;
    errno = saved;
}

int mmk__vm_lock_held(void)
{
    return vm_lock_mine;
}

/* ---- pool ------------------------------------------------------------------ */

static int reserve(void **out, size_t len)
{
    return mmk__sys_mmap(out, NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

int mmk__pool_init(void)
{
    struct mmk__pool *P = &mmk__pool;
    if (P->fd >= 0)
        return 0;
    P->page = mmk__page_size();
    P->max_pages = (uint32_t)(POOL_WINDOW_BYTES / P->page);
    P->max_nodes = MAX_NODES;
    int fd = mmk__sys_memfd("mmkit-pool", 0);
    if (fd < 0)
        return fd;
    void *win = NULL, *ref = NULL, *stack = NULL, *nodes = NULL;
    int r = mmk__sys_mmap(&win, NULL, (size_t)P->max_pages * P->page, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (r == 0)
        r = reserve(&ref, (size_t)P->max_pages * sizeof(uint32_t));
    if (r == 0)
        r = reserve(&stack, (size_t)P->max_pages * sizeof(uint32_t));
    if (r == 0)
        r = reserve(&nodes, (size_t)P->max_nodes * sizeof(struct mmk__node));
    if (r < 0) {
        if (win)
            mmk__sys_munmap(win, (size_t)P->max_pages * P->page);
        if (ref)
            mmk__sys_munmap(ref, (size_t)P->max_pages * sizeof(uint32_t));
        if (stack)
            mmk__sys_munmap(stack, (size_t)P->max_pages * sizeof(uint32_t));
        mmk__sys_close(fd);
        return r;
    }
    P->win = win;
    P->ref = ref;
    P->free_stack = stack;
    P->nodes = nodes;
    P->top = 1;      /* pool page 0 is the zero page */
    P->node_top = 1; /* node 0 is the empty subtree */
    P->fd = fd;
    return 0;
}

/* Make sure the memfd covers pages [0, need). */
static int ensure_file(uint32_t need)
{
    struct mmk__pool *P = &mmk__pool;
    if (need <= P->file_pages)
        return 0;
    if (need > P->max_pages)
        return -ENOMEM;
    uint64_t grow = (uint64_t)P->file_pages * 2;
    uint64_t min_grow = GROW_MIN_BYTES / P->page;
    uint64_t target = need;
    if (target < grow)
        target = grow;
    if (target < (uint64_t)P->file_pages + min_grow)
        target = (uint64_t)P->file_pages + min_grow;
    if (target > P->max_pages)
        target = P->max_pages;
    int r = mmk__sys_ftruncate(P->fd, (off_t)(target * P->page));
    if (r < 0 && target > need) /* try again with exactly what is needed */
        r = mmk__sys_ftruncate(P->fd, (off_t)((uint64_t)need * P->page)), target = need;
    if (r < 0)
        return r;
    P->file_pages = (uint32_t)target;
    return 0;
}

static void take(uint32_t p)
{
    mmk__pool.ref[p] = 1;
    mmk__pool.in_use++;
}

int mmk__pool_alloc(uint32_t prefer, uint32_t *out)
{
    struct mmk__pool *P = &mmk__pool;
    if (prefer && prefer < P->top && P->ref[prefer] == 0) {
        take(prefer);
        *out = prefer;
        return 0;
    }
    /* The free stack may hold stale entries (pages taken as a preference,
     * or listed twice): a page is free exactly when its refcount is 0. */
    while (P->nfree > 0) {
        uint32_t p = P->free_stack[--P->nfree];
        if (flush_mark > P->nfree)
            flush_mark = P->nfree;
        if (P->ref[p] == 0) {
            take(p);
            *out = p;
            return 0;
        }
    }
    return mmk__pool_alloc_run(1, out);
}

int mmk__pool_alloc_run(uint32_t n, uint32_t *out)
{
    struct mmk__pool *P = &mmk__pool;
    if (n == 0 || (uint64_t)P->top + n > P->max_pages)
        return -ENOMEM;
    int r = ensure_file(P->top + n);
    if (r < 0)
        return r;
    *out = P->top;
    for (uint32_t i = 0; i < n; i++)
        take(P->top + i);
    P->top += n;
    return 0;
}

/*
 * Freed pages are pushed on the free stack at once but punched (their memory
 * returned to the kernel, their contents zeroed) only by mmk__pool_flush, in
 * sorted runs: a destroy or a restore frees pages in table order, which is
 * rarely pool order, and one fallocate per run is much cheaper than one per
 * page.  Every caller that frees flushes before it drops the engine lock, and
 * nothing allocates in between, so a page is never handed out unpunched.
 * Pages pushed since the last flush are free_stack[flush_mark, nfree).
 */
static void punch(uint32_t first, uint32_t count)
{
    struct mmk__pool *P = &mmk__pool;
    int r = mmk__sys_fallocate(P->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)((uint64_t)first * P->page),
                               (off_t)((uint64_t)count * P->page));
    if (r < 0) /* no hole punching: zero by hand so reuse stays correct */
        memset(mmk__pool_addr(first), 0, (size_t)count * P->page);
}

void mmk__pool_put(uint32_t p)
{
    struct mmk__pool *P = &mmk__pool;
    if (p == 0 || --P->ref[p] != 0)
        return;
    P->in_use--;
    if (P->nfree < P->max_pages)
        P->free_stack[P->nfree++] = p;
    else
        punch(p, 1); /* no room to defer: punch now (it is lost to reuse) */
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void mmk__pool_flush(void)
{
    struct mmk__pool *P = &mmk__pool;
    if (flush_mark > P->nfree)
        flush_mark = P->nfree;
    uint32_t *v = P->free_stack + flush_mark;
    size_t n = P->nfree - flush_mark;
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_u32);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j] == v[j - 1] + 1)
            j++;
        punch(v[i], (uint32_t)(j - i));
        i = j;
    }
    flush_mark = P->nfree;
}
