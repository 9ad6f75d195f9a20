/*
 * pool.c - the page pool: "physical memory" for regions and snapshots.
 *
 * The pool is one memfd.  It is mapped once, in full, as the pool window, so
 * the engine can copy any pool page without mapping it.  The window, the
 * refcount array, the page bitmap and its summaries, the queue of pages to
 * punch and the node arena are reserved once with MAP_NORESERVE: they cost
 * address space only, until touched, and they never move, so the fault
 * handler can use them without taking any allocator lock.
 *
 * Free pages.  A bitmap holds one bit per pool page (1: in use, or freed
 * and not yet punched); two summaries hold one bit per bitmap word of 64
 * pages: "has a free page" and "all 64 are free".  A single page is found
 * through the first summary, a run of n pages through n/64 consecutive
 * all-free words of the second, so freed runs serve multi-page allocations
 * as well as single pages, and the pool only grows (its top moves up) when
 * no freed run is long enough.  Freed pages at the top lower the top again;
 * the bookkeeping behind pages that are all free again (refcounts, bitmap)
 * is given back to the kernel (MADV_DONTNEED: it reads back as zero, which
 * is what a free page's refcount and bit are).
 */
#include "vm.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define P (&mmk__eng.pool)

/* The pool window: 1 TiB of address space, 2^28 pages of 4 KiB. */
#define POOL_WINDOW_BYTES (1ull << 40)
/* The node arena: up to 2^26 nodes (9 GiB of address space). */
#define MAX_NODES (1u << 26)
/* The memfd grows in steps of at least this many bytes. */
#define GROW_MIN_BYTES (64ull << 20)
/* Words with a free page looked at for a short run before taking an
 * all-free word instead. */
#define SHORT_RUN_SCAN 256

static int reserve(void **out, size_t len)
{
    return mmk__sys_mmap(out, NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

static size_t words_of(uint64_t pages)
{
    return (size_t)((pages + 63) / 64);
}

int mmk__pool_init(void)
{
    if (P->fd >= 0)
        return 0;
    size_t page = mmk__page_size();
    uint32_t max_pages = (uint32_t)(POOL_WINDOW_BYTES / page);
    size_t nwords = words_of(max_pages), nsum = words_of(nwords);
    size_t len[6] = { (size_t)max_pages * page, (size_t)max_pages * sizeof(uint32_t),
                      nwords * 8, nsum * 8, nsum * 8, (size_t)max_pages * sizeof(uint32_t) };
    void *map[7] = { 0 };
    int fd = mmk__sys_memfd("mmkit-pool", 0);
    if (fd < 0)
        return fd;
    int r = mmk__sys_mmap(&map[0], NULL, len[0], PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_NORESERVE, fd, 0);
    for (int k = 1; r == 0 && k < 6; k++)
        r = reserve(&map[k], len[k]);
    if (r == 0)
        r = reserve(&map[6], (size_t)MAX_NODES * sizeof(struct mmk__node));
    if (r < 0) {
        for (int k = 0; k < 6; k++)
            if (map[k])
                mmk__sys_munmap(map[k], len[k]);
        mmk__sys_close(fd);
        return r;
    }
    P->page = page;
    P->max_pages = max_pages;
    P->max_nodes = MAX_NODES;
    P->win = map[0];
    P->ref = map[1];
    P->used = map[2];
    P->sum_free = map[3];
    P->sum_empty = map[4];
    P->pending = map[5];
    P->nodes = map[6];
    P->used[0] = 1;  /* pool page 0 is the zero page: never free */
    P->top = 1;
    P->node_top = 1; /* node 0 is the empty subtree */
    P->fd = fd;
    return 0;
}

void mmk__pool_extent(uint32_t *top, uint32_t *file_pages)
{
    *top = P->top;
    *file_pages = P->file_pages;
}

/* ---- the bitmap ------------------------------------------------------------- */

/* The bits of word w that stand for pages below the top. */
static inline uint64_t valid_bits(size_t w)
{
    uint64_t first = (uint64_t)w * 64;
    if (first + 64 <= P->top)
        return ~0ull;
    if (first >= P->top)
        return 0;
    return (1ull << (P->top - first)) - 1;
}

static inline uint64_t free_bits(size_t w)
{
    return ~P->used[w] & valid_bits(w);
}

static inline void set_bit(uint64_t *a, size_t i, int on)
{
    uint64_t m = 1ull << (i % 64);
    if (on) {
        if (!(a[i / 64] & m))
            a[i / 64] |= m;
    } else if (a[i / 64] & m) {
        a[i / 64] &= ~m;
    }
}

static void update_sum(size_t w)
{
    uint64_t f = free_bits(w);
    set_bit(P->sum_free, w, f != 0);
    set_bit(P->sum_empty, w, f == ~0ull);
    if (f && w < P->free_cursor)
        P->free_cursor = w;
}

/* Mark pages [a, b) used (on) or free, and fix the summaries. */
static void mark(uint32_t a, uint32_t b, int on)
{
    while (a < b) {
        size_t w = a / 64;
        uint32_t hi = (uint32_t)(w * 64 + 64) < b ? (uint32_t)(w * 64 + 64) : b;
        uint64_t m = (hi - a == 64) ? ~0ull : ((1ull << (hi - a)) - 1) << (a % 64);
        uint64_t now = on ? P->used[w] | m : P->used[w] & ~m;
        if (now != P->used[w])
            P->used[w] = now;
        update_sum(w);
        a = hi;
    }
}

/* Make sure the memfd covers pages [0, need). */
static int ensure_file(uint32_t need)
{
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

/* Hand out pages [a, a+n), all free. */
static void take(uint32_t a, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        P->ref[a + i] = 1;
    P->in_use += n;
    mark(a, a + n, 1);
}

/* n pages from the top. */
static int take_top(uint32_t n, uint32_t *out)
{
    if ((uint64_t)P->top + n > P->max_pages)
        return -ENOMEM;
    int r = ensure_file(P->top + n);
    if (r < 0)
        return r;
    uint32_t a = P->top;
    P->top += n;
    take(a, n);
    *out = a;
    return 0;
}

/* The first word at or after `from` whose bit is set in summary s, or
 * SIZE_MAX. */
static size_t next_word(const uint64_t *s, size_t from)
{
    size_t nwords = words_of(P->top), nsum = words_of(nwords);
    for (size_t k = from / 64; k < nsum; k++) {
        uint64_t x = s[k];
        if (k == from / 64)
            x &= ~0ull << (from % 64);
        if (x)
            return k * 64 + (size_t)__builtin_ctzll(x);
    }
    return SIZE_MAX;
}

/* The first run of m all-free words, or SIZE_MAX. */
static size_t empty_words(size_t m)
{
    size_t nsum = words_of(words_of(P->top)), run = 0, start = 0;
    for (size_t k = P->free_cursor / 64; k < nsum; k++) {
        uint64_t x = P->sum_empty[k];
        if (x == 0) {
            run = 0;
            continue;
        }
        for (unsigned b = 0; b < 64; b++) {
            if (!((x >> b) & 1)) {
                run = 0;
                continue;
            }
            if (!run)
                start = k * 64 + b;
            if (++run >= m)
                return start;
        }
    }
    return SIZE_MAX;
}

int mmk__pool_alloc(uint32_t prefer, uint32_t *out)
{
    if (prefer && prefer < P->top && !(P->used[prefer / 64] & (1ull << (prefer % 64)))) {
        take(prefer, 1);
        *out = prefer;
        return 0;
    }
    return mmk__pool_alloc_run(1, out);
}

int mmk__pool_alloc_run(uint32_t n, uint32_t *out)
{
    if (n == 0)
        return -ENOMEM;
    if (n < 64) {
        /* A word with n free pages in a row; a few words are tried. */
        size_t w = next_word(P->sum_free, P->free_cursor);
        if (w != SIZE_MAX && w > P->free_cursor)
            P->free_cursor = w; /* none below w has a free page */
        for (int tries = 0; w != SIZE_MAX && tries < SHORT_RUN_SCAN; tries++) {
            uint64_t x = free_bits(w);
            for (uint32_t k = 1; k < n && x; k++)
                x &= x >> 1; /* bit i set: pages i .. i+k free */
            if (x) {
                uint32_t a = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
                take(a, n);
                *out = a;
                return 0;
            }
            w = next_word(P->sum_free, w + 1);
        }
    }
    size_t m = (n + 63) / 64;
    size_t w = empty_words(m);
    if (w != SIZE_MAX) {
        take((uint32_t)(w * 64), n);
        *out = (uint32_t)(w * 64);
        return 0;
    }
    return take_top(n, out);
}

/* ---- freeing ---------------------------------------------------------------- */

/*
 * Freed pages are queued at once but punched (their memory returned to the
 * kernel, their contents zeroed) only by mmk__pool_flush, in sorted runs: a
 * destroy or a restore frees pages in table order, which is rarely pool
 * order, and one fallocate per run is much cheaper than one per page.  A
 * queued page keeps its bit set, so nothing hands it out unpunched; every
 * caller that frees flushes before it drops the engine lock.
 */
static void punch(uint32_t first, uint32_t count)
{
    int r = mmk__sys_fallocate(P->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)((uint64_t)first * P->page),
                               (off_t)((uint64_t)count * P->page));
    if (r < 0) /* no hole punching: zero by hand so reuse stays correct */
        memset(mmk__pool_addr(first), 0, (size_t)count * P->page);
}

void mmk__pool_put(uint32_t p)
{
    if (p == 0 || --P->ref[p] != 0)
        return;
    P->in_use--;
    P->pending[P->npending++] = p; /* at most one entry per page: it holds max_pages */
    if (P->npending > P->pending_high)
        P->pending_high = P->npending;
}

/* Give back the whole pages of array a (elements of `size` bytes) that only
 * hold elements [first, end). */
static void drop_pages(void *a, size_t size, uint64_t first, uint64_t end)
{
    uintptr_t lo = (uintptr_t)a + first * size, hi = (uintptr_t)a + end * size;
    lo = (lo + P->page - 1) & ~(uintptr_t)(P->page - 1);
    hi &= ~(uintptr_t)(P->page - 1);
    if (lo < hi)
        mmk__sys_madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static int is_free(uint32_t p)
{
    return p >= 1 && p < P->top && !(P->used[p / 64] & (1ull << (p % 64)));
}

/* Pages [a, b) became free: give back the refcounts behind them and their
 * free neighbours, when that covers whole pages of the array. */
static void drop_refs_around(uint32_t a, uint32_t b)
{
    size_t per_page = P->page / sizeof(uint32_t);
    while (a > 1 && a % per_page && is_free(a - 1))
        a--;
    while (b < P->top && b % per_page && is_free(b))
        b++;
    drop_pages(P->ref, sizeof(uint32_t), a, b);
}

/* Lower the top past free pages, and give back what was behind them. */
static void lower_top(void)
{
    uint32_t old = P->top;
    while (P->top > 1) {
        size_t w = (P->top - 1) / 64;
        uint64_t used = P->used[w] & valid_bits(w);
        if (used) {
            P->top = (uint32_t)(w * 64 + 64 - (size_t)__builtin_clzll(used));
            break;
        }
        P->top = (uint32_t)(w * 64);
    }
    if (P->top == old)
        return;
    for (size_t w = P->top / 64; w < words_of(old); w++)
        update_sum(w);
    drop_pages(P->ref, sizeof(uint32_t), P->top, old);
    drop_pages(P->used, 1, words_of(P->top) * 8, words_of(old) * 8);
}

/* Queues up to this long are sorted by hand.  The fault handler frees at
 * most one zero-fill run (256 pages), on a failure; only API calls (destroy,
 * restore, prepare_write) free more, and they may call qsort. */
#define SMALL_SORT 1024

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void mmk__pool_flush(void)
{
    uint32_t *v = P->pending;
    size_t n = P->npending;
    if (n == 0)
        return;
    if (n <= SMALL_SORT) { /* no qsort: it may allocate (the fault handler flushes) */
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
    } else {
        qsort(v, n, sizeof *v, cmp_u32);
    }
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j] == v[j - 1] + 1)
            j++;
        punch(v[i], (uint32_t)(j - i));
        mark(v[i], v[j - 1] + 1, 0);
        i = j;
    }
    P->npending = 0;
    lower_top();
    /* The refcounts behind long free runs read back as zero once dropped. */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[j] == v[j - 1] + 1)
            j++;
        if (v[i] < P->top && j - i >= P->page / sizeof(uint32_t) / 4)
            drop_refs_around(v[i], v[j - 1] + 1 < P->top ? v[j - 1] + 1 : P->top);
        i = j;
    }
    /* The queue itself: keep its first page. */
    if (P->pending_high * sizeof(uint32_t) > P->page) {
        drop_pages(P->pending, sizeof(uint32_t), 0, P->pending_high);
        P->pending_high = 0;
    }
}
