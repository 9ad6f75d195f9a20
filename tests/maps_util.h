/* maps_util.h - what the kernel says about our mappings, read from the text
 * of /proc/self/maps (independent of the region engine's own ways of
 * asking), for the region tests. */
#ifndef MMK_TEST_MAPS_UTIL_H
#define MMK_TEST_MAPS_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

/* Kernel mappings intersecting [base, base + len). */
static inline size_t kernel_mappings(const void *base, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    uintptr_t lo = (uintptr_t)base, hi = lo + len, a, b;
    size_t n = 0;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
            n++;
    fclose(f);
    return n;
}

#endif
