/*
 * cow_list.c - a list that keeps every old version of itself.
 *
 * The list lives in a region.  Each mmk_region_snapshot() freezes the list as
 * it is at that moment, in O(1), without copying it: the live list and every
 * snapshot share their pages until one of them is written (copy on write,
 * done by mmkit in user space).  Every version stays readable by plain
 * pointer, all at the same time:
 *
 *   $ cow_list
 *   list 1,2,3,4   s1 1,2   s2 1,2,3
 *
 * Each view sits at its own address, so a structure that lives in a region
 * should link its parts by offset, not by pointer.  This list is an array.
 */
#include "mmkit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct list {
    size_t count;
    int items[]; /* as many as the region holds */
};

#define REGION_SIZE ((size_t)1 << 20)
#define CAPACITY ((REGION_SIZE - sizeof(struct list)) / sizeof(int))

static void put(struct list *l, int value)
{
    if (l->count < CAPACITY)
        l->items[l->count++] = value;
}

/* "1,2,3" into buf. */
static const char *join(const struct list *l, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < l->count && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%d", i ? "," : "", l->items[i]);
    return buf;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "cow_list: %s: %s\n", what, mmk_strerror(err));
    return 1;
}

int main(void)
{
    mmk_region *live = mmk_region_create(REGION_SIZE, 0);
    if (!live)
        return fail("mmk_region_create", errno);
    struct list *list = mmk_region_base(live); /* zero-filled: an empty list */

    put(list, 1);
    put(list, 2);
    mmk_region *s1 = mmk_region_snapshot(live, 0);
    if (!s1)
        return fail("mmk_region_snapshot", errno);
    put(list, 3);
    mmk_region *s2 = mmk_region_snapshot(live, 0);
    if (!s2)
        return fail("mmk_region_snapshot", errno);
    put(list, 4);

    /* The snapshots are read like the live list: through a pointer. */
    const struct list *old1 = mmk_region_base(s1);
    const struct list *old2 = mmk_region_base(s2);
    if (!old1 || !old2)
        return fail("mmk_region_base", errno);

    char a[64], b[64], c[64];
    printf("list %s   s1 %s   s2 %s\n", join(list, a, sizeof a), join(old1, b, sizeof b),
           join(old2, c, sizeof c));

    /* Views may be destroyed in any order. */
    int r = mmk_region_destroy(s1);
    if (r == 0)
        r = mmk_region_destroy(live);
    if (r == 0)
        r = mmk_region_destroy(s2);
    if (r < 0)
        return fail("mmk_region_destroy", r);
    return 0;
}
