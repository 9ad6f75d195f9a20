/*
 * segtab.c - the segment table: names in sorted order, each owning one
 * sealed memfd.
 *
 * What makes a segment safe to hand out:
 *  - F_SEAL_SHRINK: no holder can truncate it and SIGBUS the others; growth
 *    stays possible (mmk_seg_grow), so F_SEAL_GROW is not set.
 *  - F_SEAL_SEAL: a writer cannot add seals of its own (F_SEAL_WRITE would
 *    freeze every other writer, F_SEAL_GROW would stop growth).
 *  - MFD_NOEXEC_SEAL where the kernel has it (Linux 6.3): never executable.
 *  - mode 0600 on the memfd's inode.  A memfd is created world-writable
 *    (0777 or 0666), and /proc/self/fd/N opens the inode again, with a
 *    fresh permission check: without the chmod, a client holding a
 *    read-only descriptor could simply reopen it read-write.
 *  - Every open hands out a new open file description (reopened through
 *    /proc/self/fd), O_RDONLY or O_RDWR: a read-only one refuses mmap
 *    PROT_WRITE with MAP_SHARED, so mprotect cannot add PROT_WRITE later
 *    either (the mapping lacks VM_MAYWRITE); and no holder shares file
 *    flags or offsets with another.
 */
#include "server.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

uint64_t mmk__realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mmk__segtab_init(struct mmk__segtab *t, size_t max, uint64_t max_size)
{
    *t = (struct mmk__segtab){ .max = max, .max_size = max_size };
}

void mmk__segtab_fini(struct mmk__segtab *t)
{
    while (t->n)
        mmk__segtab_remove(t, t->v[t->n - 1]);
    free(t->v);
    t->v = NULL;
    t->cap = 0;
}

/* Index where name is or would be inserted; *found set if it is there. */
static size_t search(const struct mmk__segtab *t, const char *name, int *found)
{
    size_t lo = 0, hi = t->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->v[mid]->name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

struct mmk__seg *mmk__segtab_find(const struct mmk__segtab *t, const char *name)
{
    int found;
    size_t i = search(t, name, &found);
    return found ? t->v[i] : NULL;
}

size_t mmk__segtab_after(const struct mmk__segtab *t, const char *name)
{
    int found;
    size_t i = search(t, name, &found);
    return found ? i + 1 : i;
}

int mmk__memfd_new(const char *prefix, const char *name, uint64_t size)
{
    char label[MMK_SEG_NAME_MAX + 16];
    /* memfd names are for /proc/PID/maps only; the kernel cuts them at 249. */
    snprintf(label, sizeof label, "%s:%.200s", prefix, name);
    int fd = mmk__sys_memfd(label, MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd == -EINVAL) /* before Linux 6.3 */
        fd = mmk__sys_memfd(label, MFD_ALLOW_SEALING);
    if (fd < 0)
        return fd;
    int e = mmk__sys_ftruncate(fd, (off_t)size);
    if (!e)
        e = mmk__sys_fchmod(fd, 0600);
    if (e < 0) {
        mmk__sys_close(fd);
        return e;
    }
    return fd;
}

/* A sealed, non-executable memfd of size bytes, mode 0600. */
static int make_memfd(const char *name, uint64_t size)
{
    int fd = mmk__memfd_new("mmkit", name, size);
    if (fd < 0)
        return fd;
    int e = mmk__sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
    if (e < 0) {
        mmk__sys_close(fd);
        return e;
    }
    return fd;
}

int mmk__segtab_create(struct mmk__segtab *t, const char *name, uint64_t size, uint32_t mode,
                       uint32_t uid, uint32_t gid, struct mmk__seg **out)
{
    int found;
    size_t i = search(t, name, &found);
    if (found)
        return -EEXIST;
    if (size > t->max_size || size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (t->n >= t->max)
        return -ENOSPC;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct mmk__seg **v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    struct mmk__seg *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    int fd = make_memfd(name, size);
    if (fd < 0) {
        free(s);
        return fd;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->fd = fd;
    s->size = size;
    s->mode = mode & 0777;
    s->uid = uid;
    s->gid = gid;
    s->mtime_ns = mmk__realtime_ns();
    s->refs = 1;
    memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof *t->v);
    t->v[i] = s;
    t->n++;
    *out = s;
    return 0;
}

void mmk__segtab_remove(struct mmk__segtab *t, struct mmk__seg *s)
{
    int found;
    size_t i = search(t, s->name, &found);
    if (!found || t->v[i] != s)
        return;
    memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof *t->v);
    t->n--;
    s->removed = 1;
    mmk__seg_unref(s);
}

void mmk__seg_ref(struct mmk__seg *s)
{
    s->refs++;
}

void mmk__seg_unref(struct mmk__seg *s)
{
    if (--s->refs > 0)
        return;
    mmk__sys_close(s->fd);
    mmk__ring_free(s->ring);
    free(s->subs);
    free(s->subring);
    free(s);
}

int mmk__seg_grow(struct mmk__seg *s, uint64_t size, uint64_t max_size)
{
    if (size > max_size || size > (uint64_t)INT64_MAX)
        return -EFBIG;
    struct stat st;
    int e = mmk__sys_fstat(s->fd, &st);
    if (e)
        return e;
    if (size < (uint64_t)st.st_size) /* a writer may have grown it itself */
        return -EINVAL;
    e = mmk__sys_ftruncate(s->fd, (off_t)size);
    if (e)
        return e;
    s->size = size;
    return 0;
}

int mmk__memfd_reopen(int fd, int flags)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return mmk__sys_open(path, flags, 0);
}

int mmk__seg_reopen(const struct mmk__seg *s, int rw)
{
    return mmk__memfd_reopen(s->fd, rw ? O_RDWR : O_RDONLY);
}

int mmk__seg_access(uint32_t mode, uint32_t uid, uint32_t gid, const struct mmk__cred *c, int want)
{
    if (c->uid == 0)
        return 0;
    unsigned bits;
    int in_group = c->gid == gid;
    for (int i = 0; i < c->ngroups && !in_group; i++)
        in_group = c->groups[i] == gid;
    if (c->uid == uid)
        bits = (mode >> 6) & 7;
    else if (in_group)
        bits = (mode >> 3) & 7;
    else
        bits = mode & 7;
    return ((int)bits & want) == want ? 0 : -EACCES;
}

void mmk__seg_info(const struct mmk__seg *s, mmk_seg_info *in)
{
    memset(in, 0, sizeof *in);
    memcpy(in->name, s->name, sizeof in->name);
    struct stat st;
    /* A writer may grow the memfd itself; the kernel's size is the truth. */
    uint64_t size = s->size;
    if (mmk__sys_fstat(s->fd, &st) == 0 && (uint64_t)st.st_size > size)
        size = (uint64_t)st.st_size;
    in->size = size;
    in->mode = s->mode;
    in->uid = s->uid;
    in->gid = s->gid;
    in->version = s->version;
    in->holders = s->holders;
    in->subscribers = (uint32_t)s->nsubs;
    in->mtime_ns = s->mtime_ns;
}

int mmk__seg_sub_add(struct mmk__seg *s, struct mmk__conn *c, int *ringp)
{
    int ring = *ringp != 0;
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i] == c)
            return -EALREADY;
    if (s->nsubs == s->capsubs) {
        size_t cap = s->capsubs ? s->capsubs * 2 : 8;
        struct mmk__conn **v = realloc(s->subs, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->subs = v;
        uint8_t *f = realloc(s->subring, cap);
        if (!f)
            return -ENOMEM;
        s->subring = f;
        s->capsubs = cap;
    }
    /* No ring (out of descriptors, say): event messages still work. */
    if (ring && !s->ring && !(s->ring = mmk__ring_new(s->name)))
        ring = 0;
    s->subring[s->nsubs] = (uint8_t)ring;
    s->subs[s->nsubs++] = c;
    s->nringsubs += (size_t)ring;
    *ringp = ring;
    return 0;
}

static void ring_unused(struct mmk__seg *s)
{
    if (s->nringsubs == 0 && s->ring) {
        mmk__ring_free(s->ring);
        s->ring = NULL;
    }
}

void mmk__seg_sub_del(struct mmk__seg *s, struct mmk__conn *c)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i] == c) {
            s->nringsubs -= s->subring[i];
            s->nsubs--;
            s->subs[i] = s->subs[s->nsubs];
            s->subring[i] = s->subring[s->nsubs];
            ring_unused(s);
            return;
        }
    }
}

int mmk__seg_sub_ring(const struct mmk__seg *s, size_t i)
{
    return s->subring[i];
}

void mmk__seg_sub_clear(struct mmk__seg *s)
{
    s->nsubs = 0;
    s->nringsubs = 0;
    ring_unused(s);
}
