/*
 * mirror.h - internal: the double mapping shared by mirrors and rings.
 */
#ifndef MMK_MIRROR_INTERNAL_H
#define MMK_MIRROR_INTERNAL_H

#include <stddef.h>

/*
 * Map size bytes of fd (from offset 0) twice, back to back: [base, base +
 * size) with prot_first and [base + size, base + 2 * size) with prot_second,
 * both MAP_SHARED.  The whole range is reserved (PROT_NONE) first and both
 * halves are mapped into it with MAP_FIXED, so no other thread's mmap can
 * land in between.  pre: size > 0, page-aligned, 2 * size does not overflow.
 * On success *base is set; on failure nothing is left mapped.  0 or -errno.
 */
int mmk__double_map(int fd, size_t size, int prot_first, int prot_second, char **base);

/*
 * memfd of size bytes named name, close-on-exec, sealed against shrinking
 * and growing.  Returns the fd or -errno (ENOMEM when size does not fit in
 * an off_t).  Nothing stays open on failure.
 */
int mmk__sealed_memfd(const char *name, size_t size);

#endif
