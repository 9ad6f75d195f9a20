/*
 * vm.h - internals shared by the snapshot engine: the page pool (pool.c), the
 * copy-on-write page-table trees (ptable.c), the views' address space
 * (space.c) and write-protection by moving page tables (protect.c).  Their
 * state lives in the engine object (engine.h).
 *
 * The terms are a kernel's:
 *   pool page  = a physical page frame: one page of a process-wide memfd,
 *                named by its index; index 0 is never used and stands for
 *                "the zero page" (never written, no memory).
 *   node       = a page-table node of MMK__FANOUT slots, named by its index in
 *                the node arena; index 0 stands for an all-zero subtree.
 *   view       = an mmk_region: a live region, a snapshot or a branch.  Its
 *                page table is a tree of nodes whose leaves hold pool pages.
 *
 * Refcounts: a pool page counts the leaf slots that name it; a node counts the
 * parent slots (or view roots) that name it.  A slot is exclusive to a view
 * when every node on its path has refcount 1; a page is private to a view when
 * its slot is exclusive and the page's refcount is 1.  Only a private page may
 * be mapped writable, so a write can never reach memory another view sees.
 *
 * Everything here runs under the engine lock (mmk__vm_lock), from API calls
 * or from the write-fault handler.  Nothing here calls malloc: the pool's
 * refcounts and bitmaps and the node arena are large MAP_NORESERVE
 * reservations made once, so the fault handler can allocate from them.
 */
#ifndef MMK_VM_H
#define MMK_VM_H

#include "engine.h"

#include <stddef.h>
#include <stdint.h>

/* ---- pool (pool.c) ----------------------------------------------------- */

/* Create the pool on first use.  pre: lock held.  0 or -errno. */
int mmk__pool_init(void);
/* A zeroed pool page, `prefer` if it is free (0: no preference).  0 or -errno. */
int mmk__pool_alloc(uint32_t prefer, uint32_t *out);
/* n contiguous zeroed pool pages: freed ones when a run of them is free,
 * else from the top.  0 or -errno. */
int mmk__pool_alloc_run(uint32_t n, uint32_t *out);
static inline char *mmk__pool_addr(uint32_t p)
{
    return mmk__eng.pool.win + (size_t)p * mmk__eng.pool.page;
}
static inline void mmk__pool_get(uint32_t p)
{
    mmk__eng.pool.ref[p]++;
}
/* Drop one reference; a page whose last reference goes is punched out of
 * the memfd (its memory returns to the kernel) and becomes free.  Frees are
 * queued and punched in runs by mmk__pool_flush, which every caller that
 * frees runs before it drops the lock. */
void mmk__pool_put(uint32_t p);
void mmk__pool_flush(void);
/* Tests: pages handed out at least once and not given back (the top), and
 * the memfd's size in pages. */
void mmk__pool_extent(uint32_t *top, uint32_t *file_pages);

/* ---- nodes and trees (ptable.c) ---------------------------------------- */

/* A zeroed node with refcount 1; 0 when the arena is exhausted. */
uint32_t mmk__node_alloc(void);
static inline struct mmk__node *mmk__node(uint32_t n)
{
    return &mmk__eng.pool.nodes[n];
}
/* Drop a reference to the subtree n at `level` (1 = leaf). */
void mmk__node_put(uint32_t n, unsigned level);
static inline void mmk__node_get(uint32_t n)
{
    if (n)
        mmk__eng.pool.nodes[n].ref++;
}
/* When no node is in use any more, give the arena's memory back. */
void mmk__node_trim(void);

/* Levels needed for a tree over npages pages (at least 1). */
unsigned mmk__pt_levels(size_t npages);
/* The pool page that backs `page` (0 = zero page). */
uint32_t mmk__pt_lookup(uint32_t root, unsigned levels, size_t page);
/* 1 if `page`'s slot is exclusive to the tree (every node refcount 1). */
int mmk__pt_exclusive(uint32_t root, unsigned levels, size_t page);
/*
 * Make the path to `page` exclusive (copying shared nodes, creating missing
 * ones) and return its leaf slot, or NULL when the node arena is exhausted.
 * The returned pointer stays valid until the tree changes again.
 */
uint32_t *mmk__pt_slot(uint32_t *root, unsigned levels, size_t page);
/* The leaf node that holds `slot` (a pointer mmk__pt_slot returned). */
static inline uint32_t mmk__pt_leaf_of(const uint32_t *slot)
{
    return (uint32_t)(((const char *)slot - (const char *)mmk__eng.pool.nodes) /
                      sizeof(struct mmk__node));
}
/* The slot index of `page` in its leaf. */
static inline unsigned mmk__pt_leaf_index(size_t page)
{
    return (unsigned)page & (MMK__FANOUT - 1);
}
/* Call fn for every maximal run of pages whose backing differs in a and b.
 * Identical subtrees are skipped, so the cost follows the differences. */
typedef int (*mmk__pt_diff_fn)(size_t first, size_t count, void *ctx);
int mmk__pt_diff(uint32_t a, uint32_t b, unsigned levels, size_t npages, mmk__pt_diff_fn fn,
                 void *ctx);
/* Count pages in the tree: nonzero pages, and of those the private ones. */
void mmk__pt_count(uint32_t root, unsigned levels, size_t npages, size_t *nonzero,
                   size_t *private_pages);

/* ---- the views' address space (space.c) -------------------------------- */

/* Reserve the space on first use.  pre: lock held. */
int mmk__space_init(void);
/* A range of at least len bytes for owner, granule-aligned.  0 or -ENOMEM. */
int mmk__space_alloc(size_t len, void *owner, char **out);
/* Give a range back.  pre: it is PROT_NONE again. */
int mmk__space_free(char *base, size_t len);
/* Never hand [base, base+len) out again (someone else maps part of it):
 * its granules get mmk__scratch_owner for good. */
void mmk__space_retire(char *base, size_t len);
/* The owner of the granule holding addr, or NULL.  Lock-free read, but only
 * meaningful under the lock. */
void *mmk__space_owner(const void *addr);

/* ---- write-protect by moving page tables (protect.c) --------------------- */

/* The write-protect methods, in the order they are tried. */
enum { MMK__PROTECT_MOVE, MMK__PROTECT_MPROTECT, MMK__PROTECT_METHODS };
/* Runs shorter than this are mprotected (unless a method is forced). */
#define MMK__PROTECT_MIN_PAGES 512
/* Read MMKIT_PROTECT (setup, not in a signal handler). */
void mmk__protect_configure(void);
/* Tests: force a method for runs of any length (-1: automatic again). */
void mmk__protect_force(int method);
/* The forced method, or -1. */
int mmk__protect_forced(void);
/* The method long runs get now: the forced one, else the first the kernel
 * has not refused. */
int mmk__protect_method(void);
const char *mmk__protect_name(int method);
/* The shortest run the method above is used for. */
size_t mmk__protect_min_pages(void);
/* Short runs (those mprotected) at most this many pages apart, every page
 * between them mapped, are protected by one mprotect (view_protect.c).
 * MMKIT_PROTECT_BATCH=off (0: every run its own call) or =max (SIZE_MAX: any
 * distance) at setup, or mmk__protect_force_gap() in tests, change it. */
#define MMK__PROTECT_SPAN_GAP 1024
size_t mmk__protect_span_gap(void);
/* Tests: the gap (0: off, SIZE_MAX: any); (size_t)-2: the default again. */
void mmk__protect_force_gap(size_t gap);
/*
 * Move the entries of [addr, addr+len) into a scratch range with a plain
 * mremap: the range becomes a hole, which the caller fills at once with
 * MAP_FIXED_NOREPLACE.  inner_breaks: marks inside the range (the mappings
 * moved along).  pre: lock held.  0, or -errno with nothing changed.
 */
int mmk__protect_move_away(char *addr, size_t len, long inner_breaks);
/* Owner tag of the scratch ranges in the view space (and of ranges given
 * up for good, see ST_LOST in view.h): never a view. */
extern char mmk__scratch_owner;
/* Mappings the scratch ranges not yet dropped may hold. */
long mmk__protect_pending(void);
/* Drop every queued scratch range now, on this thread (the one the reaper
 * is dropping, if any, stays pending).  pre: lock held. */
void mmk__protect_drain(void);
/* Reset after fork() in the child. */
void mmk__protect_forked(void);
/* Tests: called (if set) between the move and the fill of the hole, with
 * the hole; a test maps something there to play another thread. */
extern void (*mmk__protect_hole_hook)(void *addr, size_t len);

#endif
