/*
 * helper_mirror_child.c - exec'd by test_mirror: opens a mirror by the fd it
 * inherited and checks that it is the same memory.
 *
 *   helper_mirror_child FD EXPECTED MODE
 *
 * Reads EXPECTED at offset 0 of the read-only view (exit 3 if it is not
 * there), then by MODE: "write" writes "hello from the child" at offset 4096
 * in a write window and exits 0; "stray" writes through the read-only view at
 * offset 100, which must kill it with the stray-write report.
 */
#include "mmkit.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int fd = atoi(argv[1]);
    mmk_mirror *m = mmk_mirror_open_fd(fd, 0);
    if (!m) {
        fprintf(stderr, "helper: mmk_mirror_open_fd: %s\n", mmk_strerror(errno));
        return 2;
    }
    const char *ro = mmk_mirror_ro(m);
    if (mmk_mirror_size(m) < 8192 || strcmp(ro, argv[2]) != 0)
        return 3;
    if (strcmp(argv[3], "write") == 0) {
        if (mmk_mirror_begin_write(m) != 0)
            return 4;
        strcpy(mmk_rw(m, ro + 4096), "hello from the child");
        if (mmk_mirror_end_write(m) != 0)
            return 4;
    } else if (strcmp(argv[3], "stray") == 0) {
        *(volatile char *)(uintptr_t)(ro + 100) = 'X'; /* must not survive */
        return 5;
    }
    return mmk_mirror_destroy(m) == 0 ? 0 : 6;
}
