/*
 * arena_used.c - how much of an arena's file is the program's.
 *
 * What "used" means.  The file must hold exactly the program's bytes, but a
 * page inside an already grown chunk can be written without any fault, so
 * faults say nothing about how much was written.  The used size is
 *
 *     max(allocation pointer, offset of the last non-zero byte + 1)
 *
 * where the allocation pointer starts at the used size found at open and
 * advances with mmk_arena_alloc (anonymous arenas included).  The last non-zero byte is found by scanning
 * backwards from the end of the file, skipping holes with SEEK_DATA and
 * SEEK_HOLE (the growth slack of a fallocated file reads as holes on ext4
 * and xfs until written).  Zero bytes stored past both are indistinguishable
 * from slack and are trimmed.
 *
 * Reopen.  Close trims the file to the used size and records that size in
 * the extended attribute user.mmkit.used; sync records the allocation
 * pointer there too, both as max(what is recorded, ours), so that no handle
 * lowers what another synced.  Close trims to the byte, so a file may end
 * inside a page, where a store past the end does not fault and would never
 * reach the file: opening a writable file extends it to the page boundary.  Open takes max(recorded size, last non-zero byte), so
 * trailing zeros that were allocated survive a close, and after a crash the
 * slack the dead process left behind is recognised.  A file without the
 * attribute (not written by mmkit, or on a filesystem without user xattrs)
 * counts as used up to its end.
 */
#include "arena.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

/* One past the last non-zero byte of p[lo, hi), or lo if there is none. */
static size_t scan_back(const unsigned char *p, size_t lo, size_t hi)
{
    while (hi > lo && (hi & 7))
        if (p[--hi])
            return hi + 1;
    while (hi - lo >= 64) {
        const uint64_t *w = (const uint64_t *)(const void *)(p + hi - 64);
        if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
            break;
        hi -= 64;
    }
    while (hi > lo)
        if (p[--hi])
            return hi + 1;
    return lo;
}

/*
 * One past the last non-zero byte of the file in [from, to), or from.
 * Data extents are found with SEEK_DATA / SEEK_HOLE.  They can only be
 * searched forwards, so the search looks at a window at the end of the range
 * first and doubles it backwards while the window holds no data: the cost
 * follows the distance from the end to the last data, not the file size (a
 * SEEK_HOLE over a long run of cached pages walks the page cache).  Without
 * SEEK_DATA support each window is scanned whole.  pre: the file is at least
 * `to` bytes long.
 */
static size_t last_nonzero(const mmk_arena *a, size_t from, size_t to)
{
    const unsigned char *p = (const unsigned char *)a->base;
    size_t window = DEFAULT_MIN_CHUNK;
    while (to > from) {
        size_t start = to - from > window ? to - window : from;
        size_t lo = start, hi = to;
        off_t d = mmk__sys_lseek(a->fd, (off_t)start, SEEK_DATA);
        if (d == -ENXIO || (d >= 0 && (size_t)d >= to)) {
            to = start; /* no data in the window: look further back */
            window = window > SIZE_MAX / 2 ? window : 2 * window;
            continue;
        }
        while (d >= 0) { /* find the last data extent in [start, to) */
            off_t h = mmk__sys_lseek(a->fd, d, SEEK_HOLE);
            if (h < 0 || (size_t)h >= to) {
                lo = (size_t)d;
                hi = to;
                break;
            }
            off_t next = mmk__sys_lseek(a->fd, h, SEEK_DATA);
            if (next < 0 || (size_t)next >= to) {
                lo = (size_t)d;
                hi = (size_t)h;
                break;
            }
            d = next;
        }
        size_t n = scan_back(p, lo, hi);
        if (n > lo)
            return n;
        to = lo;
    }
    return from;
}

/*
 * The used size as far as this handle can see: up to the end of the file or
 * of the reservation, whichever comes first.  *beyond tells whether the file
 * goes on past the reservation (grown by a handle with a larger one): what
 * lies there cannot be scanned.
 */
size_t mmk__arena_used_in_view(const mmk_arena *a, int *beyond)
{
    size_t bump = atomic_load(&a->bump), size;
    *beyond = 0;
    if (mmk__arena_fstat_size(a, &size) < 0)
        return bump;
    if (size > a->reserve) {
        *beyond = 1;
        size = a->reserve;
    }
    return size > bump ? last_nonzero(a, bump, size) : bump;
}

size_t mmk__arena_compute_used(const mmk_arena *a)
{
    int beyond;
    size_t used = mmk__arena_used_in_view(a, &beyond), size;
    /* Past the reservation, all of the file counts. */
    if (beyond && mmk__arena_fstat_size(a, &size) == 0 && size > used)
        used = size;
    return used;
}

/* The used size recorded in the xattr, or SIZE_MAX if none can be read. */
size_t mmk__arena_recorded_used(const mmk_arena *a)
{
    char buf[24];
    int n = mmk__sys_fgetxattr(a->fd, XATTR_USED, buf, sizeof buf - 1);
    if (n <= 0)
        return SIZE_MAX;
    size_t rec = 0;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9' || rec > (SIZE_MAX - 9) / 10)
            return SIZE_MAX;
        rec = rec * 10 + (size_t)(buf[i] - '0');
    }
    return rec;
}

/*
 * Lock out the other handles' mmk__arena_record_used(.., 1) (an OFD lock on byte 1;
 * growth uses byte 0).  Best effort: without OFD locks two handles recording
 * at the same instant may lose the larger value.
 */
int mmk__arena_lock_record(mmk_arena *a, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1 };
    int r;
    do
        r = mmk__sys_fcntl(a->fd, type == F_UNLCK ? F_OFD_SETLK : F_OFD_SETLKW,
                           (long)(uintptr_t)&fl);
    while (r == -EINTR);
    return r;
}

/*
 * Record used in the xattr; with merge, record max(used, what is recorded
 * now), so that one handle never lowers what another synced (the recorded
 * value is trusted up to the file size only: a file truncated by another
 * tool may keep a stale attribute).  Returns the value recorded.
 */
size_t mmk__arena_record_used(mmk_arena *a, size_t used, int merge)
{
    int locked = merge && mmk__arena_lock_record(a, F_WRLCK) == 0;
    if (merge) {
        size_t rec = mmk__arena_recorded_used(a), size;
        if (rec != SIZE_MAX && mmk__arena_file_size(a, &size) == 0) {
            if (rec > size)
                rec = size;
            if (rec > used)
                used = rec;
        }
    }
    char buf[24];
    int n = 0;
    char d[24];
    int i = 0;
    size_t v = used;
    do
        d[i++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (i > 0)
        buf[n++] = d[--i];
    mmk__sys_fsetxattr(a->fd, XATTR_USED, buf, (size_t)n, 0); /* best effort */
    if (locked)
        mmk__arena_lock_record(a, F_UNLCK);
    return used;
}

/* The used size of a file being opened (see the comment at the top). */
size_t mmk__arena_recover_used(mmk_arena *a, size_t size)
{
    size_t rec = mmk__arena_recorded_used(a);
    if (rec >= size)
        return size;
    return last_nonzero(a, rec, size);
}

