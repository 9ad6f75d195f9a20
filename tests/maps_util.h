/* maps_util.h - what the kernel says about our mappings, read from the text
 * of /proc/self/maps (independent of the region engine's own ways of
 * asking), for the region tests. */
#ifndef MMK_TEST_MAPS_UTIL_H
#define MMK_TEST_MAPS_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Kernel mappings intersecting [base, base + len).  The file is produced a
 * buffer at a time, each under its own hold of the mmap lock, and resumes
 * from the last address it printed; a mapping that another thread (the
 * engine's reaper) changed in between is printed again, starting below the
 * end of the previous line.  Such a line is a second picture of a mapping
 * already counted, not another mapping: skip it.
 */
static inline size_t kernel_mappings(const void *base, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    uintptr_t lo = (uintptr_t)base, hi = lo + len, a, b, end = 0;
    size_t n = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx", &a, &b) != 2 || a < end)
            continue;
        end = b;
        if (a < hi && b > lo)
            n++;
    }
    fclose(f);
    return n;
}

#endif
