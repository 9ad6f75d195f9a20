/*
 * engine.h - the region engine's one state object.
 *
 * Everything the snapshot engine changes lives in `mmk__eng`: the lock, the
 * page pool and node arena (pool.c, ptable.c), the views' address space
 * (space.c), the list of views, the mapping budget and the mapping count.
 * There is exactly one engine per process (the fault router has one handler
 * per area and the pool is process-wide), so it is one static instance, but
 * no file keeps engine state of its own.
 *
 * Every field is read and written under the engine lock (mmk__vm_lock),
 * from API calls or from the write-fault handler, unless it says otherwise.
 *
 * The mapping count.  The engine must never count fewer kernel mappings in
 * the view space than the kernel holds: that count is what keeps a write
 * fault from failing at vm.max_map_count.  Whether the kernel merges two
 * neighbouring mappings depends on their history and on the kernel version,
 * so the engine counts only what every kernel guarantees: one mmap call
 * makes one mapping, and no call splits a mapping anywhere but at the edges
 * of the range it was given.  Each view marks the pages where a kernel
 * mapping may begin (a "break"), the engine sums them, and at checkpoints
 * (when the count nears the budget) it asks the kernel where its mappings
 * really begin and lowers the marks to that (mmk__engine_calibrate).
 */
#ifndef MMK_ENGINE_H
#define MMK_ENGINE_H

#include "mmkit.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MMK__FANOUT_BITS 5
#define MMK__FANOUT (1u << MMK__FANOUT_BITS)

struct mmk__node {
    uint32_t ref;
    uint32_t twin : 31; /* a leaf copied from another: that leaf (a hint
                         * only: it may have changed or been freed since) */
    uint32_t leaf : 1;  /* this node is a leaf (its slots are pool pages) */
    uint32_t slot[MMK__FANOUT];
};

/* The page pool (pool.c).  Free pages are kept in a bitmap, one bit per
 * pool page (1 = in use or waiting to be punched), with two summaries of one
 * bit per bitmap word (64 pages): "has a free page" and "is all free".  A
 * run of all-free words serves a multi-page allocation. */
struct mmk__pool {
    int fd;               /* the memfd: physical memory */
    char *win;            /* the whole memfd mapped once, for copies */
    uint32_t max_pages;   /* size of the window and of the arrays below */
    uint32_t top;         /* pages [1, top) may be in use; none above */
    uint32_t file_pages;  /* the memfd's current size in pages */
    uint32_t in_use;      /* pool pages with refcount > 0 */
    uint32_t *ref;        /* refcount per pool page */
    uint64_t *used;       /* bit per page: in use or not yet punched */
    uint64_t *sum_free;   /* bit per used[] word: it has a free page */
    uint64_t *sum_empty;  /* bit per used[] word: all 64 pages free */
    size_t free_cursor;   /* no used[] word below this has a free page */
    uint32_t *pending;    /* pages freed since the last flush (to punch) */
    uint32_t npending, pending_high;
    struct mmk__node *nodes; /* the node arena */
    uint32_t max_nodes, node_top, node_free, nodes_in_use;
    size_t page;
};

/* The views' address space (space.c): one PROT_NONE reservation, handed
 * out in granules from a sorted list of free extents. */
struct mmk__extent {
    size_t first, count; /* in granules */
};

struct mmk__space {
    char *base;
    size_t granules;
    void **owners;             /* one owner per granule, NULL when free */
    struct mmk__extent *freelist; /* sorted by first, coalesced */
    size_t nfree, free_cap;
    mmk_area *area;            /* its one fault-router area */
};

/* The mapping count of the view space (see the top of this file). */
struct mmk__maps {
    long total;        /* 2 (reservation, pool window) + every view's breaks
                        * and edges + orphans; scratch ranges not yet
                        * dropped add their charge (mmk__protect_pending) */
    long orphans;      /* breaks no view owns: edges left by destroyed views
                        * and dropped scratch ranges */
    long since_cal;    /* breaks marked since the last calibration */
    unsigned long calibrations;
    int maps_fd;       /* /proc/self/maps, opened at init; -1 if none */
    int use_query;     /* 1: PROCMAP_QUERY works; 0: parse the text */
};

#define MMK__RECENT 4

struct mmk__engine {
    atomic_int lock_word;   /* the futex (see mmk__vm_lock) */
    atomic_int ready;       /* pool, space and area set up */
    int maps_opened;        /* the /proc/self/maps handle and base count */
    int forked_child;       /* in a child of fork(): nothing works */
    struct mmk__pool pool;
    struct mmk__space space;
    struct mmk_region *views; /* every materialized view */
    /* Views faulted on most recently: evicted last, so that an instruction
     * touching two views (a memcpy between them) cannot evict its own source. */
    struct mmk_region *recent[MMK__RECENT];
    unsigned recent_next;
    size_t budget;          /* the mapping budget; 0 until set up */
    struct mmk__maps maps;
};

extern struct mmk__engine mmk__eng;

/* ---- the engine lock (a futex; async-signal-safe) ----------------------- */

void mmk__vm_lock(void);
void mmk__vm_unlock(void);
/* 1 if the calling thread holds the lock (a fault inside the engine). */
int mmk__vm_lock_held(void);

/* ---- life cycle (engine.c) ------------------------------------------------ */

/* Set the engine up on first use: pool, space, fault area, budget, the
 * /proc/self/maps handle.  Idempotent and thread-safe.  pre: engine lock
 * NOT held (the fault area is registered with it released).  0 or -errno. */
int mmk__engine_start(void);
/* 1 in a child of fork() (every region call fails there). */
static inline int mmk__engine_forked(void)
{
    return mmk__eng.forked_child;
}
/* Register the fork handlers once (not under the lock). */
void mmk__engine_atfork(void);

/* ---- budget and count (engine.c) --------------------------------------- */

/* The largest budget accepted: vm.max_map_count, read now. */
size_t mmk__engine_max_budget(void);
/* Set the budget (0: the default).  pre: lock held.  0, -EINVAL, or what
 * making room returned. */
int mmk__engine_set_budget(size_t mappings);
/*
 * Make room under the budget for `need` more breaks (cur: the view being
 * served, evicted last): drop scratch ranges now, ask the kernel for the
 * real count, and unmap views.  0 or -MMK_EBUDGET.
 */
int mmk__engine_make_room(struct mmk_region *cur, long need);
/* The kernel refused a mapping for its own limit: unmap the view (other
 * than cur) holding the most mappings.  0, or -MMK_EBUDGET if none maps
 * anything. */
int mmk__engine_shed(struct mmk_region *cur);
/* Ask the kernel where the mappings of the view space begin and lower
 * every mark to that.  pre: lock held.  0 or -errno (nothing changed). */
int mmk__engine_calibrate(void);
/* Count the kernel mappings that intersect [lo, hi) (tests, calibration).
 * Uses PROCMAP_QUERY when it works, else parses /proc/self/maps.  Returns
 * the count or -errno. */
long mmk__engine_kernel_count(uintptr_t lo, uintptr_t hi);
/* Tests: 1 forces the /proc/self/maps text path (also MMKIT_MAPS_TEXT=1 in
 * the environment at setup). */
void mmk__engine_force_text(int on);
/* Tests: the view space, and the number of calibrations run so far. */
void mmk__engine_space_range(char **base, size_t *len);
unsigned long mmk__engine_calibrations(void);

/* A scratch range was dropped (protect.c): its two edges may stay as breaks
 * no view owns.  pre: lock held. */
static inline void mmk__engine_orphan_breaks(long n)
{
    mmk__eng.maps.orphans += n;
    mmk__eng.maps.total += n;
    mmk__eng.maps.since_cal += n;
}

#endif
