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
 * Everything here runs under the engine lock.
 */
#include "vm.h"
#include "sys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GRANULE_SHIFT 21
#define GRANULE ((size_t)1 << GRANULE_SHIFT)

struct extent {
    size_t first, count; /* in granules */
};

static char *space_base;
static size_t space_granules;
static void **owners;          /* one owner per granule, NULL when free */
static struct extent *freelist; /* sorted by first, coalesced */
static size_t nfree, free_cap;

int mmk__space_init(size_t *len_out, char **base_out)
{
    if (space_base) {
        *base_out = space_base;
        *len_out = space_granules << GRANULE_SHIFT;
        return 0;
    }
    /* As much as the address space gives, from 32 TiB down to 64 GiB. */
    int r = -ENOMEM;
    void *base = NULL;
    size_t len;
    for (len = (size_t)32 << 40; len >= ((size_t)64 << 30); len /= 2) {
        r = mmk__sys_mmap(&base, NULL, len + GRANULE, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == 0)
            break;
    }
    if (r < 0)
        return r;
    /* Align the start to a granule; the slack stays reserved. */
    uintptr_t aligned = ((uintptr_t)base + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
    size_t granules = len >> GRANULE_SHIFT;
    void *map;
    r = mmk__sys_mmap(&map, NULL, granules * sizeof(void *), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    struct extent *fl = malloc(16 * sizeof *fl);
    if (r < 0 || !fl) {
        if (r == 0)
            mmk__sys_munmap(map, granules * sizeof(void *));
        free(fl);
        mmk__sys_munmap(base, len + GRANULE);
        return r < 0 ? r : -ENOMEM;
    }
    owners = map;
    freelist = fl;
    free_cap = 16;
    freelist[0] = (struct extent){ 0, granules };
    nfree = 1;
    space_granules = granules;
    space_base = (char *)aligned;
    *base_out = space_base;
    *len_out = len;
    return 0;
}

int mmk__space_alloc(size_t len, void *owner, char **out)
{
    size_t need = (len + GRANULE - 1) >> GRANULE_SHIFT;
    for (size_t k = 0; k < nfree; k++) {
        if (freelist[k].count < need)
            continue;
        size_t first = freelist[k].first;
        freelist[k].first += need;
        freelist[k].count -= need;
        if (freelist[k].count == 0) {
            memmove(freelist + k, freelist + k + 1, (nfree - k - 1) * sizeof *freelist);
            nfree--;
        }
        for (size_t g = 0; g < need; g++)
            owners[first + g] = owner;
        *out = space_base + (first << GRANULE_SHIFT);
        return 0;
    }
    return -ENOMEM;
}

int mmk__space_free(char *base, size_t len)
{
    size_t first = (size_t)(base - space_base) >> GRANULE_SHIFT;
    size_t count = (len + GRANULE - 1) >> GRANULE_SHIFT;
    for (size_t g = 0; g < count; g++)
        owners[first + g] = NULL;
    /* Insert in order, then coalesce with the neighbours. */
    size_t k = 0;
    while (k < nfree && freelist[k].first < first)
        k++;
    int joins_left = k > 0 && freelist[k - 1].first + freelist[k - 1].count == first;
    int joins_right = k < nfree && first + count == freelist[k].first;
    if (joins_left && joins_right) {
        freelist[k - 1].count += count + freelist[k].count;
        memmove(freelist + k, freelist + k + 1, (nfree - k - 1) * sizeof *freelist);
        nfree--;
    } else if (joins_left) {
        freelist[k - 1].count += count;
    } else if (joins_right) {
        freelist[k].first = first;
        freelist[k].count += count;
    } else {
        if (nfree == free_cap) {
            struct extent *n = realloc(freelist, 2 * free_cap * sizeof *n);
            if (!n)
                return -ENOMEM; /* the range stays reserved, unused */
            freelist = n;
            free_cap *= 2;
        }
        memmove(freelist + k + 1, freelist + k, (nfree - k) * sizeof *freelist);
        freelist[k] = (struct extent){ first, count };
        nfree++;
    }
    return 0;
}

void *mmk__space_owner(const void *addr)
{
    uintptr_t a = (uintptr_t)addr, b = (uintptr_t)space_base;
    if (!space_base || a < b || a - b >= (space_granules << GRANULE_SHIFT))
        return NULL;
    return owners[(a - b) >> GRANULE_SHIFT];
}
