/*
 * ring.c - the magic ring buffer: one memfd mapped twice, back to back.
 *
 * The double mapping is the one mirrors use (mmk__double_map), with both
 * halves read-write.  Two habits of hand-written versions are avoided: the
 * second half is never placed with a hint and a prayer (the whole range is
 * reserved first, so no other thread's mmap can take it), and no file is
 * created in /tmp (the memory is an anonymous memfd, closed once mapped).
 */
#include "mmkit.h"
#include "mirror.h"
#include "sys.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

struct mmk_ring {
    char *base;
    size_t size;
};

mmk_ring *mmk_ring_create(size_t size)
{
    if (size == 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t pg = mmk__page_size();
    if (size > SIZE_MAX / 2 - pg || size > (size_t)INT64_MAX / 2) {
        errno = ENOMEM;
        return NULL;
    }
    size = (size + pg - 1) & ~(pg - 1);
    mmk_ring *r = malloc(sizeof *r);
    if (!r) {
        errno = ENOMEM;
        return NULL;
    }
    int fd = mmk__sealed_memfd("mmkit-ring", size);
    if (fd < 0) {
        free(r);
        errno = -fd;
        return NULL;
    }
    int e = mmk__double_map(fd, size, PROT_READ | PROT_WRITE, PROT_READ | PROT_WRITE, &r->base);
    /* The mappings keep the memory alive; the descriptor is not needed. */
    mmk__sys_close(fd);
    if (e < 0) {
        free(r);
        errno = -e;
        return NULL;
    }
    r->size = size;
    return r;
}

void *mmk_ring_base(mmk_ring *r)
{
    return r ? r->base : NULL;
}

size_t mmk_ring_size(const mmk_ring *r)
{
    return r ? r->size : 0;
}

int mmk_ring_destroy(mmk_ring *r)
{
    if (!r)
        return -EINVAL;
    mmk__sys_munmap(r->base, 2 * r->size);
    free(r);
    return 0;
}
