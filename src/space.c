/*
 * space.c - the address space that region views live in.
 *
 * One large PROT_NONE, MAP_NORESERVE reservation holds every view's address
 * range, so that
 *   - a view that is not mapped at all costs no kernel mapping: its PROT_NONE
 *     pages merge with the reservation around it (snapshots are unlimited, but
 *     vm.max_map_count is not);
 *   - the fault router needs one area for all views, and the handler finds
 *     the view of an address in O(1) through a table with one entry per
 *     granule (2 MiB) of the space.
 * Ranges are handed out first-fit from a list of free extents, in granules.
 * Everything here runs under the engine lock; the state is the engine's
 * (engine.h).
 */
#include "vm.h"
#include "sys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GRANULE_SHIFT 21
#define GRANULE ((size_t)1 << GRANULE_SHIFT)

#define S (&mmk__eng.space)

/*
 * Where the space is asked to start (a hint: the kernel takes any free
 * range when this one is not).  The kernel places mmap(NULL) top-down, in
 * the highest free gap that fits; a space placed there, below the shared
 * libraries, would make a hole a write-protect by move leaves for a moment
 * (protect.c) the first choice of any other thread's next mmap.  At 32 TiB
 * it sits below the program (PIE binaries load near 85 TiB), beneath the
 * large free gap the kernel fills first, and above the ranges sanitizers
 * reserve.
 */
#define SPACE_HINT ((uintptr_t)32 << 40)

int mmk__space_init(void)
{
    if (S->base)
        return 0;
    /* As much as the address space gives, from 32 TiB down to 64 GiB. */
    int r = -ENOMEM;
    void *base = NULL;
    size_t len;
    for (len = (size_t)32 << 40; len >= ((size_t)64 << 30); len /= 2) {
        r = mmk__sys_mmap(&base, (void *)SPACE_HINT, len + GRANULE, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == 0)
            break;
    }
    if (r < 0)
        return r;
    /* Align the start to a granule; the slack stays reserved. */
    uintptr_t aligned = ((uintptr_t)base + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
    size_t granules = len >> GRANULE_SHIFT;
    void *map = NULL;
    r = mmk__sys_mmap(&map, NULL, granules * sizeof(void *), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    /* The free list never needs more than one extent per two granules:
     * reserved whole, so freeing never allocates (it runs in the fault
     * handler when scratch ranges are dropped there). */
    size_t cap = granules / 2 + 2;
    void *fl = NULL;
    if (r == 0)
        r = mmk__sys_mmap(&fl, NULL, cap * sizeof(struct mmk__extent), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r < 0) {
        if (map)
            mmk__sys_munmap(map, granules * sizeof(void *));
        mmk__sys_munmap(base, len + GRANULE);
        return r;
    }
    S->owners = map;
    S->freelist = fl;
    S->free_cap = cap;
    S->freelist[0] = (struct mmk__extent){ 0, granules };
    S->nfree = 1;
    S->granules = granules;
    S->base = (char *)aligned;
    return 0;
}

int mmk__space_alloc(size_t len, void *owner, char **out)
{
    size_t need = (len + GRANULE - 1) >> GRANULE_SHIFT;
    for (size_t k = 0; k < S->nfree; k++) {
        if (S->freelist[k].count < need)
            continue;
        size_t first = S->freelist[k].first;
        S->freelist[k].first += need;
        S->freelist[k].count -= need;
        if (S->freelist[k].count == 0) {
            memmove(S->freelist + k, S->freelist + k + 1, (S->nfree - k - 1) * sizeof *S->freelist);
            S->nfree--;
        }
        for (size_t g = 0; g < need; g++)
            S->owners[first + g] = owner;
        *out = S->base + (first << GRANULE_SHIFT);
        return 0;
    }
    return -ENOMEM;
}

int mmk__space_free(char *base, size_t len)
{
    size_t first = (size_t)(base - S->base) >> GRANULE_SHIFT;
    size_t count = (len + GRANULE - 1) >> GRANULE_SHIFT;
    for (size_t g = 0; g < count; g++)
        S->owners[first + g] = NULL;
    /* Insert in order, then coalesce with the neighbours. */
    size_t k = 0;
    while (k < S->nfree && S->freelist[k].first < first)
        k++;
    int joins_left = k > 0 && S->freelist[k - 1].first + S->freelist[k - 1].count == first;
    int joins_right = k < S->nfree && first + count == S->freelist[k].first;
    if (joins_left && joins_right) {
        S->freelist[k - 1].count += count + S->freelist[k].count;
        memmove(S->freelist + k, S->freelist + k + 1, (S->nfree - k - 1) * sizeof *S->freelist);
        S->nfree--;
    } else if (joins_left) {
        S->freelist[k - 1].count += count;
    } else if (joins_right) {
        S->freelist[k].first = first;
        S->freelist[k].count += count;
    } else {
        if (S->nfree == S->free_cap)
            return -ENOMEM; /* cannot happen: the range stays reserved, unused */
        memmove(S->freelist + k + 1, S->freelist + k, (S->nfree - k) * sizeof *S->freelist);
        S->freelist[k] = (struct mmk__extent){ first, count };
        S->nfree++;
    }
    return 0;
}

void mmk__space_retire(char *base, size_t len)
{
    size_t first = (size_t)(base - S->base) >> GRANULE_SHIFT;
    size_t count = (len + GRANULE - 1) >> GRANULE_SHIFT;
    for (size_t g = 0; g < count; g++)
        S->owners[first + g] = &mmk__scratch_owner;
}

void *mmk__space_owner(const void *addr)
{
    uintptr_t a = (uintptr_t)addr, b = (uintptr_t)S->base;
    if (!S->base || a < b || a - b >= (S->granules << GRANULE_SHIFT))
        return NULL;
    return S->owners[(a - b) >> GRANULE_SHIFT];
}
