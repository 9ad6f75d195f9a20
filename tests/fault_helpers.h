/* fault_helpers.h - fixtures shared by the fault-router tests: the page
 * size (set by setup, the tests' .init), PROT_NONE pages to fault on, and
 * a handler that passes every fault on. */
#ifndef MMK_TEST_FAULT_HELPERS_H
#define MMK_TEST_FAULT_HELPERS_H

#include "mmkit.h"

#include <criterion/criterion.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page;

__attribute__((unused)) static void setup(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
}

__attribute__((unused)) static char *map_none(size_t pages)
{
    char *p = mmap(NULL, pages * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED);
    return p;
}

__attribute__((unused)) static int never(const mmk_fault *f, void *ctx)
{
    (void)f;
    (void)ctx;
    return MMK_FAULT_PASS;
}

#endif
