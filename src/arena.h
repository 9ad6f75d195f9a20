/*
 * arena.h - the arena handle, shared by arena.c (open, growth from the
 * fault handler, close) and arena_used.c (the used size: scanning for the
 * last written byte, recording it in an extended attribute).
 */
#ifndef MMK_ARENA_H
#define MMK_ARENA_H

#include "mmkit.h"

#include <stdatomic.h>
#include <stddef.h>

#define XATTR_USED "user.mmkit.used"
#define DEFAULT_MIN_CHUNK ((size_t)1 << 20)
#define DEFAULT_MAX_CHUNK ((size_t)256 << 20)
#define NAME_LEN 200

struct mmk_arena {
    int fd;
    unsigned flags;
    int anon;               /* on a memfd: no trim, no xattr, ftruncate growth */
    char *base;
    size_t reserve;         /* page-rounded length of the reservation */
    size_t page;
    mmk_area *area;
    atomic_size_t size;     /* file size as last seen: a lower bound */
    atomic_size_t bump;     /* allocation pointer */
    atomic_size_t min_chunk, max_chunk;
    atomic_int truncate_growth; /* fallocate unsupported: serialized ftruncate */
    atomic_ulong grow_lock; /* 0, or the fork generation of the holder + 1 */
    atomic_size_t faults, grows;
    unsigned long gen;      /* distinguishes this open from earlier ones */
    char name[NAME_LEN];
};

/* arena.c */
/* The file's size now (an fstat), changing nothing. */
int mmk__arena_fstat_size(const mmk_arena *a, size_t *out);
/* The same, also raising the size seen. */
int mmk__arena_file_size(mmk_arena *a, size_t *out);

/* arena_used.c */
/* The used size up to the end of the file or of the reservation, whichever
 * comes first; *beyond: the file goes on past the reservation. */
size_t mmk__arena_used_in_view(const mmk_arena *a, int *beyond);
/* The used size as far as this handle can see (see arena_used.c). */
size_t mmk__arena_compute_used(const mmk_arena *a);
/* The used size recorded in the xattr, or SIZE_MAX if none can be read. */
size_t mmk__arena_recorded_used(const mmk_arena *a);
/* An OFD lock on byte 1 of the file (F_WRLCK, or F_UNLCK to drop it). */
int mmk__arena_lock_record(mmk_arena *a, short type);
/* Record used (with merge: max(used, recorded)); returns the value recorded. */
size_t mmk__arena_record_used(mmk_arena *a, size_t used, int merge);
/* The used size of a file being opened, size bytes long. */
size_t mmk__arena_recover_used(mmk_arena *a, size_t size);

#endif
