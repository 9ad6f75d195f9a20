/*
 * lazy_gc.h - a lazy copying garbage collector driven by page protection,
 * built on mmkit's fault router.  A worked example, header-only so that
 * examples/lazy_gc.c (the mutator and its checks) and bench/gc.c (the
 * benchmark) share one copy of it.  Not part of libmmkit.
 *
 * The idea (Appel, Ellis and Li, 1988).  A stop-and-copy collector pauses the
 * program while it copies everything reachable.  This one copies only the
 * roots, makes the to-space pages that hold copied-but-unscanned objects
 * inaccessible to the program, and returns.  The program can only reach
 * objects through the roots, so the first thing it touches is an unscanned
 * page: the access faults, the handler scans exactly that page (copying what
 * its pointers refer to out of from-space), makes it accessible and retries
 * the access.  The program never sees a from-space pointer.  gc_finish()
 * scans whatever the program did not touch.
 *
 * Two views of one memfd.  The handler scanning page P must write P while the
 * program's view of P is still protected, and must copy objects into pages
 * that the program may not see yet.  So the heap (a memfd holding both
 * semispaces) is mapped twice: the program's view, whose to-space pages are
 * protected, and the collector's alias, always readable and writable.  The
 * collector reads and writes only through the alias; pointers stored in
 * objects are always program-view addresses.
 *
 * No system call in the pause.  Between collections the program never
 * touches from-space, so gc_finish() leaves it protected (PROT_NONE): a
 * program that kept a stale pointer dies at its next use instead of reading
 * old data, and the next flip finds its to-space protected already.  The pause
 * is the copying of the roots and nothing else.
 *
 * Layout of to-space during a lazy collection:
 *
 *   to                        copy            open          alloc      to_end
 *   | scanned and unscanned    |    free        |   free      | new       |
 *   | copies (protected until  |  (protected)   | (accessible)| objects   |
 *   | scanned)                 |                |             |           |
 *
 * Copies grow up from the bottom; objects the program allocates grow down
 * from the top, in pages that gc_alloc() unprotects a chunk at a time
 * (open moves down), never below the copies.  New objects never need
 * scanning: the program only holds to-space pointers, so it only stores
 * to-space pointers.
 *
 * Objects straddle pages.  A page-start table (first[]) gives, for every
 * to-space page, the object that covers its first byte; scanning page P
 * starts there and forwards only the pointer fields that lie inside P.  The
 * page that holds the copy pointer is special: once it is scanned and made
 * accessible, nothing may be copied into the rest of it (those copies would
 * be unscanned yet visible), so the handler closes it with a filler object
 * and the copy pointer moves to the next page.
 *
 * Object layout: one 64-bit header, then nptrs pointers, then the bytes.
 *   bits 32..63 size in bytes (header included, a multiple of 8)
 *   bits  2..31 number of pointers
 *   bit   1     filler (padding, not an object)
 *   bit   0     forwarded: in from-space, the header is then the address of
 *               the copy, | 1
 * A pointer is the address of an object's header, or NULL.
 *
 * Limits: one mutator thread (the handler and the program share the copy and
 * allocation pointers without locks); every pointer the program keeps across
 * gc_collect() must be in the root set; a system call must not read or write
 * heap memory during an unfinished collection (it would get EFAULT on a
 * protected page instead of a fault); semispaces are at most 4 GiB.
 */
#ifndef LAZY_GC_H
#define LAZY_GC_H

#include "mmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GC_FWD 1u
#define GC_FILLER 2u
#define GC_HDR 8u                     /* bytes of header */
#define GC_OPEN_CHUNK ((size_t)256 << 10) /* gc_alloc unprotects this much at a time */

struct gc_stats {
    size_t objects;      /* objects copied */
    size_t bytes;        /* bytes copied (objects only) */
    size_t pad;          /* filler bytes that closed scanned copy-pointer pages */
    size_t faults;       /* pages scanned by the fault handler */
    size_t finish_pages; /* pages scanned by gc_finish (or at flip, stop-the-world) */
    size_t overflow;     /* 1 if the mapping limit forced an early finish */
    uint64_t pause_ns;   /* gc_collect: flip to return */
    uint64_t handler_ns; /* time spent inside the fault handler (scan + unprotect) */
    uint64_t finish_ns;  /* gc_finish: the rest of the scan + the protection changes */
    uint64_t unprotect_ns; /* of which: opening all of to-space to the program */
    uint64_t reprotect_ns; /* of which: protecting from-space for the next flip */
};

struct gc {
    char *view;        /* the program's view: both semispaces, 2 * semi bytes */
    char *alias;       /* the collector's view of the same memfd */
    ptrdiff_t delta;   /* alias - view */
    size_t semi;       /* bytes per semispace, a multiple of the page size */
    size_t page;
    unsigned shift;    /* log2(page) */
    int fd;
    mmk_area *area;
    char *from, *from_end;
    char *to, *to_end;
    char *copy;        /* next copy goes here (program-view address) */
    char *open;        /* lazy collection: [to, open) is protected except scanned
                          pages, [open, to_end) accessible; otherwise to */
    char *alloc;       /* the lowest object the program allocated */
    int lazy;          /* collections are lazy (else stop-the-world) */
    int collecting;    /* a collection is unfinished */
    uint32_t epoch;    /* scanned[q] == epoch: page q was scanned this cycle */
    uint32_t *first;   /* per to-space page: offset of the object covering its first byte */
    uint32_t *scanned;
    size_t nroots;
    void **roots;      /* the root set: the program reads and writes these */
    struct gc_stats stats; /* of the current or last collection */
};

/* ---- object access ------------------------------------------------------- */

static inline uint64_t gc_hdr_make(size_t size, size_t nptrs)
{
    return (uint64_t)size << 32 | (uint64_t)nptrs << 2;
}
static inline size_t gc_hdr_size(uint64_t h) { return (size_t)(h >> 32); }
static inline size_t gc_hdr_nptrs(uint64_t h) { return (size_t)(h & 0xffffffffu) >> 2; }

/* Bytes an object with nptrs pointers and nbytes bytes occupies. */
static inline size_t gc_size_for(size_t nptrs, size_t nbytes)
{
    return (GC_HDR + nptrs * sizeof(void *) + nbytes + 7) & ~(size_t)7;
}
static inline size_t gc_size(const void *o) { return gc_hdr_size(*(const uint64_t *)o); }
static inline size_t gc_nptrs(const void *o) { return gc_hdr_nptrs(*(const uint64_t *)o); }
static inline void **gc_ptrs(void *o) { return (void **)((char *)o + GC_HDR); }
static inline unsigned char *gc_bytes(void *o)
{
    return (unsigned char *)o + GC_HDR + gc_nptrs(o) * sizeof(void *);
}
/* Bytes after the pointers (rounding included). */
static inline size_t gc_nbytes(const void *o)
{
    return gc_size(o) - GC_HDR - gc_nptrs(o) * sizeof(void *);
}

/* The program and the fault handler share the gc's fields on one thread.  A
 * handler runs between two instructions of the program, so the compiler must
 * not keep those fields in registers across gc calls: every entry point
 * starts and ends with a compiler barrier. */
static inline void gc__barrier(void) { atomic_signal_fence(memory_order_seq_cst); }

static inline uint64_t gc_now_ns(void) /* async-signal-safe (vDSO) */
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Fatal error from anywhere, the fault handler included: one line, abort. */
static inline void gc__die(const char *what)
{
    static const char pre[] = "lazy_gc: fatal: ";
    ssize_t w = write(2, pre, sizeof pre - 1);
    w = write(2, what, strlen(what));
    w = write(2, "\n", 1);
    (void)w;
    abort();
}

static inline char *gc__page_floor(const struct gc *g, const char *p)
{
    return (char *)((uintptr_t)p & ~(uintptr_t)(g->page - 1));
}
static inline char *gc__page_ceil(const struct gc *g, const char *p)
{
    return gc__page_floor(g, p + g->page - 1);
}

/* ---- copying -------------------------------------------------------------- */

/* Copies may go up to here: never into a page the program allocates in. */
static inline char *gc__copy_limit(const struct gc *g)
{
    return g->collecting && g->lazy ? g->open : gc__page_floor(g, g->alloc);
}

/* Note that the object at [dst, dst + size) covers the first byte of every
 * page that starts inside it. */
static inline void gc__note_pages(struct gc *g, char *dst, size_t size)
{
    size_t off = (size_t)(dst - g->to);
    size_t q = (off + g->page - 1) >> g->shift, last = (off + size - 1) >> g->shift;
    for (; q <= last; q++)
        g->first[q] = (uint32_t)off;
}

/* The to-space address of the object p refers to, copying it first if it is
 * still in from-space.  Everything is read and written through the alias. */
static inline void *gc__forward(struct gc *g, void *pv)
{
    char *p = pv;
    if (p < g->from || p >= g->from_end)
        return p; /* NULL, or already in to-space */
    uint64_t *h = (uint64_t *)(p + g->delta);
    uint64_t w = *h;
    if (w & GC_FWD)
        return (void *)(uintptr_t)(w & ~(uint64_t)7);
    size_t size = gc_hdr_size(w);
    char *dst = g->copy;
    if (size > (size_t)(gc__copy_limit(g) - dst))
        gc__die("to-space is full (the live data and the new objects do not fit)");
    memcpy(dst + g->delta, p + g->delta, size);
    gc__note_pages(g, dst, size);
    g->copy = dst + size;
    *h = (uint64_t)(uintptr_t)dst | GC_FWD;
    g->stats.objects++;
    g->stats.bytes += size;
    return dst;
}

/*
 * Scan to-space page q: forward every pointer field that lies inside it, of
 * every object that overlaps it, including objects copied into this same
 * page while it is being scanned.  With close_page, a page that holds the
 * copy pointer is then closed with a filler, so that no later copy lands in
 * a page the program can already see.
 */
static inline void gc__scan_page(struct gc *g, size_t q, int close_page)
{
    char *start = g->to + (q << g->shift), *end = start + g->page;
    char *o = g->to + g->first[q];
    while (o < end && o < g->copy) {
        uint64_t w = *(uint64_t *)(o + g->delta);
        size_t n = (w & GC_FILLER) ? 0 : gc_hdr_nptrs(w);
        char *f = o + GC_HDR, *fe = f + n * sizeof(void *);
        if (f < start)
            f = start;
        if (fe > end)
            fe = end;
        for (; f < fe; f += sizeof(void *)) {
            void **slot = (void **)(f + g->delta);
            *slot = gc__forward(g, *slot);
        }
        o += gc_hdr_size(w);
    }
    if (close_page && o == g->copy && o < end) {
        size_t pad = (size_t)(end - o);
        *(uint64_t *)(o + g->delta) = gc_hdr_make(pad, 0) | GC_FILLER;
        g->copy = end;
        g->stats.pad += pad;
    }
    g->scanned[q] = g->epoch;
}

/* Scan every page not scanned yet, in address order (a Cheney scan with
 * pages as the unit), until nothing copied is left unscanned. */
static inline void gc__scan_rest(struct gc *g)
{
    for (size_t q = 0; g->to + (q << g->shift) < g->copy; q++)
        if (g->scanned[q] != g->epoch) {
            gc__scan_page(g, q, 0);
            g->stats.finish_pages++;
        }
}

/* All scanned: open to-space to the program, close from-space to it. */
static inline void gc__end_collection(struct gc *g)
{
    if (g->lazy) {
        uint64_t t0 = gc_now_ns();
        if (g->open > g->to &&
            mprotect(g->to, (size_t)(g->open - g->to), PROT_READ | PROT_WRITE) != 0)
            gc__die("mprotect(PROT_READ|PROT_WRITE) of to-space failed");
        uint64_t t1 = gc_now_ns();
        if (mprotect(g->from, g->semi, PROT_NONE) != 0)
            gc__die("mprotect(PROT_NONE) of from-space failed");
        g->stats.unprotect_ns = t1 - t0;
        g->stats.reprotect_ns = gc_now_ns() - t1;
    }
    g->open = g->to;
    g->collecting = 0;
}

/* ---- the fault handler (async-signal-safe: no malloc, no stdio) ----------- */

static int gc__on_fault(const mmk_fault *f, void *ctx)
{
    struct gc *g = ctx;
    char *a = f->addr;
    if (!g->collecting || !g->lazy || a < g->to || a >= g->open)
        return MMK_FAULT_PASS; /* not an unscanned to-space page: a real bug */
    size_t q = (size_t)(a - g->to) >> g->shift;
    char *start = g->to + (q << g->shift);
    if (start >= g->copy || g->scanned[q] == g->epoch)
        return MMK_FAULT_PASS; /* no object there: the program has a wild pointer */
    uint64_t t0 = gc_now_ns();
    gc__scan_page(g, q, 1);
    g->stats.faults++;
    if (mprotect(start, g->page, PROT_READ | PROT_WRITE) != 0) {
        if (errno != ENOMEM)
            gc__die("mprotect of a scanned page failed");
        /* Too many mappings (vm.max_map_count): every scanned page split the
         * protected mapping.  Finish the collection here; unprotecting all of
         * to-space merges the pieces back into one mapping. */
        gc__scan_rest(g);
        gc__end_collection(g);
        g->stats.overflow = 1;
    }
    g->stats.handler_ns += gc_now_ns() - t0;
    return MMK_FAULT_RETRY;
}

/* ---- the calls ------------------------------------------------------------ */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Map the pages of [p, p + len) writable now, and store into each once, so
 * that no collection pays for a first touch.  (Measured on a 2-vCPU VM: even
 * after MADV_POPULATE_WRITE, the first store to each page of a new mapping
 * cost about 6 us - the hypervisor's, not a guest fault; the second cost
 * nothing.) */
static inline void gc__populate(struct gc *g, char *p, size_t len)
{
    (void)madvise(p, len, MADV_POPULATE_WRITE); /* Linux 5.14; else the stores fault */
    for (size_t i = 0; i < len; i += g->page)
        ((volatile char *)p)[i] = p[i];
}

/*
 * A heap of two semispaces of semi bytes each, with nroots roots (all NULL),
 * collected lazily or (lazy 0) stop-the-world.  Both semispaces are
 * allocated and mapped now, so that no collection pays first-touch faults.
 * 0 or a negative errno.
 */
static inline int gc_init(struct gc *g, size_t semi, size_t nroots, int lazy)
{
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    while (((size_t)1 << g->shift) < g->page)
        g->shift++;
    semi = (semi + g->page - 1) & ~(g->page - 1);
    if (semi == 0 || semi > ((size_t)1 << 32))
        return -EINVAL;
    g->semi = semi;
    size_t npages = semi >> g->shift;
    int err;
    g->roots = calloc(nroots ? nroots : 1, sizeof *g->roots);
    g->first = calloc(npages, sizeof *g->first);
    g->scanned = calloc(npages, sizeof *g->scanned);
    if (!g->roots || !g->first || !g->scanned)
        goto fail_errno;
    g->nroots = nroots;
    g->fd = memfd_create("lazy_gc", MFD_CLOEXEC);
    if (g->fd < 0 || ftruncate(g->fd, (off_t)(2 * semi)) != 0 ||
        fallocate(g->fd, 0, 0, (off_t)(2 * semi)) != 0)
        goto fail_errno;
    /* One reservation: the program's view, then the collector's alias. */
    char *r = mmap(NULL, 4 * semi, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        goto fail_errno;
    g->view = r;
    g->alias = r + 2 * semi;
    g->delta = g->alias - g->view;
    if (mmap(g->view, 2 * semi, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             g->fd, 0) == MAP_FAILED ||
        mmap(g->alias, 2 * semi, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
             g->fd, 0) == MAP_FAILED)
        goto fail_errno;
    gc__populate(g, g->view, 2 * semi);
    gc__populate(g, g->alias, 2 * semi);
    g->area = mmk_area_register(g->view, 2 * semi, gc__on_fault, g);
    if (!g->area)
        goto fail_errno;
    g->to = g->view;
    g->to_end = g->view + semi;
    g->from = g->to_end;
    g->from_end = g->from + semi;
    g->copy = g->open = g->to;
    g->alloc = g->to_end;
    g->lazy = lazy;
    if (lazy && mprotect(g->from, semi, PROT_NONE) != 0)
        goto fail_errno;
    return 0;

fail_errno:
    err = -errno;
    if (g->view)
        munmap(g->view, 4 * semi);
    if (g->fd >= 0)
        close(g->fd);
    free(g->roots);
    free(g->first);
    free(g->scanned);
    memset(g, 0, sizeof *g);
    return err;
}

static inline void gc_destroy(struct gc *g)
{
    if (g->area)
        mmk_area_unregister(g->area);
    munmap(g->view, 4 * g->semi);
    close(g->fd);
    free(g->roots);
    free(g->first);
    free(g->scanned);
    memset(g, 0, sizeof *g);
}

/*
 * A new object with nptrs NULL pointers and nbytes zero bytes, or NULL if
 * the semispace is full (collect, then try again).  During an unfinished
 * collection it lands above everything copied, in pages never protected.
 */
static inline void *gc_alloc(struct gc *g, size_t nptrs, size_t nbytes)
{
    gc__barrier();
    size_t size = gc_size_for(nptrs, nbytes);
    int lazy_now = g->collecting && g->lazy;
    /* Never into a page that holds copies (or, lazily, may still get some). */
    char *floor = lazy_now ? gc__page_ceil(g, g->copy) : g->copy;
    char *o = NULL;
    if (size <= (size_t)(g->alloc - floor)) {
        o = g->alloc - size;
        if (lazy_now && o < g->open) {
            /* Open the next chunk below: from here down, no copy may go. */
            char *n = gc__page_floor(g, o);
            n = (size_t)(n - floor) > GC_OPEN_CHUNK ? n - GC_OPEN_CHUNK : floor;
            if (mprotect(n, (size_t)(g->open - n), PROT_READ | PROT_WRITE) != 0)
                gc__die("mprotect of free to-space failed");
            g->open = n;
        }
    }
    if (o) {
        memset(o, 0, size);
        *(uint64_t *)o = gc_hdr_make(size, nptrs);
        g->alloc = o;
    }
    gc__barrier();
    return o;
}

/*
 * Scan everything the program has not touched yet and make all of to-space
 * accessible again.  Does nothing if no collection is unfinished.
 */
static inline void gc_finish(struct gc *g)
{
    gc__barrier();
    if (g->collecting) {
        uint64_t t0 = gc_now_ns();
        gc__scan_rest(g);
        gc__end_collection(g);
        g->stats.finish_ns = gc_now_ns() - t0;
    }
    gc__barrier();
}

/*
 * Collect.  Flip the semispaces and copy the roots.  A lazy heap returns
 * now: to-space is still protected from the last gc_finish(), and the rest
 * happens in the fault handler and gc_finish().  A stop-the-world heap
 * scans everything before returning.  An unfinished collection is finished
 * first.
 */
static inline void gc_collect(struct gc *g)
{
    gc__barrier();
    gc_finish(g);
    uint64_t t0 = gc_now_ns();
    memset(&g->stats, 0, sizeof g->stats);
    char *old = g->to;
    g->to = g->from;
    g->to_end = g->from_end;
    g->from = old;
    g->from_end = old + g->semi;
    g->epoch++;
    g->copy = g->to;
    g->open = g->lazy ? g->to_end : g->to;
    g->alloc = g->to_end;
    g->collecting = 1;
    for (size_t i = 0; i < g->nroots; i++)
        g->roots[i] = gc__forward(g, g->roots[i]);
    if (!g->lazy) {
        gc__scan_rest(g);
        gc__end_collection(g);
    }
    g->stats.pause_ns = gc_now_ns() - t0;
    gc__barrier();
}

/* True while p is a to-space address (what the program may hold). */
static inline int gc_in_to_space(const struct gc *g, const void *p)
{
    return (const char *)p >= g->to && (const char *)p < g->to_end;
}

/* Write-touch every page of [p, p + len): after fork() the kernel made them
 * copy-on-write, and the first store to each would fault (inside a pause). */
static inline void gc__reown(struct gc *g, void *p, size_t len)
{
    volatile char *c = p;
    for (size_t i = 0; i < len; i += g->page)
        c[i] = c[i];
    if (len)
        c[len - 1] = c[len - 1];
}

/* Re-own the collector's own memory after fork(), in parent and child. */
static inline void gc__reown_all(struct gc *g)
{
    gc__reown(g, g, sizeof *g);
    gc__reown(g, g->roots, g->nroots * sizeof *g->roots);
    gc__reown(g, g->first, (g->semi >> g->shift) * sizeof *g->first);
    gc__reown(g, g->scanned, (g->semi >> g->shift) * sizeof *g->scanned);
}

/*
 * Give this process its own copy of the heap at the same addresses (a new
 * memfd, both views remapped over the old ones), so that a collection here
 * does not touch the heap another process shares through fork().  Call it
 * in a child of fork(), outside a collection.  0 or a negative errno.
 */
static inline int gc_clone_private(struct gc *g)
{
    size_t len = 2 * g->semi;
    int fd = memfd_create("lazy_gc-clone", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0 || fallocate(fd, 0, 0, (off_t)len) != 0)
        return -errno;
    char *tmp = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (tmp == MAP_FAILED)
        return -errno;
    memcpy(tmp, g->alias, len); /* the view may be partly protected */
    munmap(tmp, len);
    if (mmap(g->view, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
             0) == MAP_FAILED ||
        mmap(g->alias, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
             0) == MAP_FAILED)
        return -errno;
    gc__populate(g, g->view, len);
    gc__populate(g, g->alias, len);
    close(g->fd);
    g->fd = fd;
    if (g->lazy && mprotect(g->from, g->semi, PROT_NONE) != 0)
        return -errno;
    gc__reown_all(g);
    return 0;
}

/*
 * The stop-the-world collection of this very heap, run in a child process on
 * a private copy (the heap here is unchanged).  warm (may be NULL) runs in the
 * child first, so that its caches hold what the parent's held (pass what the
 * program did just before collecting); after (may be NULL) runs in the child
 * after the collection (to report through shared memory what the graph
 * looks like there).  Fills *st with the child's statistics; 0, or -1 if the
 * child failed.
 */
static inline int gc_stw_in_child(struct gc *g, void (*warm)(void), void (*after)(void),
                                  struct gc_stats *st)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        g->lazy = 0;
        if (gc_clone_private(g) != 0)
            _exit(1);
        if (warm)
            warm();
        gc_collect(g);
        if (after)
            after();
        ssize_t w = write(p[1], &g->stats, sizeof g->stats);
        _exit(w == (ssize_t)sizeof g->stats ? 0 : 1);
    }
    close(p[1]);
    ssize_t r = read(p[0], st, sizeof *st);
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    gc__reown_all(g);
    return r == (ssize_t)sizeof *st && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

#endif
