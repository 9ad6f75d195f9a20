/*
 * shm.c - shmget/shmat/shmdt/shmctl with Linux semantics over the file store
 * (src/shm_store.c) and this process's attach table (src/shm_attach.c).
 *
 * Permission checks are the filesystem's wherever it can make them: opening
 * a segment file for reading or writing is shmat's access check, unlinking a
 * name in the sticky store is IPC_RMID's, chown/chmod are IPC_SET's.  The
 * checks made here on top follow the kernel's ipcperms() so that errors come
 * back with the kernel's codes and in the kernel's order.
 */
#include "shm.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- a segment opened for one call ------------------------------------------ */

struct handle {
    struct mmk__shm_store *s;
    int id;
    struct stat st;
    struct mmk__shm_seg *g; /* in this process's table: use its descriptors */
    int opath;              /* O_PATH descriptor of s.<id>, or -1 */
    int rfd, wfd;           /* opened for this call only, or -1 */
    struct mmk__shm_meta m;
    int have_meta;
};

/* How a call needs the file: no access (O_PATH), reading, or writing. */
enum { WANT_PATH, WANT_READ, WANT_WRITE };

static int h_open(struct mmk__shm_store *s, int id, struct handle *h, int want)
{
    char name[32];
    memset(h, 0, sizeof *h);
    h->s = s;
    h->id = id;
    h->opath = h->rfd = h->wfd = -1;
    if (id < 0 || id >= MMK__SHM_MAX_IDS)
        return -EINVAL;
    mmk__shm_seg_name(name, sizeof name, id);
    /* Attached here already: use the table's descriptors and open nothing
     * (closing a second descriptor would drop the attach locks). */
    struct mmk__shm_seg *g = mmk__shm_seg_by_id(id);
    if (g && mmk__sys_fstatat(s->dirfd, name, &h->st, AT_SYMLINK_NOFOLLOW) == 0 &&
        h->st.st_dev == g->dev && h->st.st_ino == g->ino) {
        h->g = g;
        return 0;
    }
    static const int flags[] = { O_PATH, O_RDONLY | O_NONBLOCK, O_RDWR | O_NONBLOCK };
    int fd = mmk__sys_openat(s->dirfd, name, flags[want] | O_NOFOLLOW, 0);
    if (fd == -ENOENT) {
        /* Removed, but still attached here: the id lives on in this process
         * (as the kernel keeps it until the last detach). */
        h->g = g ? g : mmk__shm_seg_removed(id);
        if (!h->g)
            return -EINVAL;
        h->g->removed = 1; /* by another process */
        return mmk__sys_fstat(h->g->rfd >= 0 ? h->g->rfd : h->g->wfd, &h->st);
    }
    if (fd < 0)
        return fd == -ELOOP ? -MMK_ECORRUPT : fd;
    int r = mmk__sys_fstat(fd, &h->st);
    if (r < 0 || !S_ISREG(h->st.st_mode) || (size_t)h->st.st_size < s->page) {
        mmk__sys_close(fd);
        return r < 0 ? r : -MMK_ECORRUPT;
    }
    h->g = mmk__shm_seg_find(h->st.st_dev, h->st.st_ino);
    if (h->g) {
        /* The file is attached here under another name (a hard link): keep
         * the descriptor with the table's until the last detach. */
        if (want == WANT_PATH)
            mmk__sys_close(fd); /* O_PATH descriptors hold no locks */
        else
            mmk__shm_seg_keep(h->g, fd);
        return 0;
    }
    if (want == WANT_PATH)
        h->opath = fd;
    else if (want == WANT_READ)
        h->rfd = fd;
    else
        h->wfd = fd;
    return 0;
}

static void h_close(struct handle *h)
{
    if (h->rfd >= 0)
        mmk__sys_close(h->rfd);
    if (h->wfd >= 0)
        mmk__sys_close(h->wfd);
    if (h->opath >= 0)
        mmk__sys_close(h->opath);
}

/* Reopen the very inode behind fd (never a name that could be swapped). */
static int reopen(int fd, int flags)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return mmk__sys_open(proc, flags | O_NONBLOCK, 0);
}

/* A descriptor for reading (write 0) or writing (write 1), or -errno. */
static int h_fd(struct handle *h, int write)
{
    struct mmk__shm_seg *g = h->g;
    if (g) {
        if (!write && g->rfd >= 0)
            return g->rfd;
        if (g->wfd >= 0)
            return g->wfd;
        if (!write)
            return g->rfd;
        int fd = reopen(g->rfd, O_RDWR);
        if (fd >= 0)
            g->wfd = fd; /* kept: closing it would drop the attach locks */
        return fd;
    }
    int *slot = write ? &h->wfd : &h->rfd;
    if (*slot < 0) {
        if (!write && h->wfd >= 0)
            return h->wfd;
        int any = h->opath >= 0 ? h->opath : h->rfd >= 0 ? h->rfd : h->wfd;
        *slot = reopen(any, write ? O_RDWR : O_RDONLY);
    }
    return *slot;
}

static int h_meta(struct handle *h)
{
    if (h->have_meta)
        return 0;
    int fd = h_fd(h, 0);
    if (fd < 0)
        return fd;
    unsigned char buf[MMK__SHM_HDR_BYTES];
    ssize_t n = mmk__sys_pread(fd, buf, sizeof buf, 0);
    if (n < 0)
        return (int)n;
    int r = mmk__shm_hdr_parse(buf, (size_t)n, &h->m);
    if (r < 0)
        return r;
    /* A file shorter than its header says was truncated by a writer: its
     * attachers would get SIGBUS, so it is refused. */
    if (h->m.id != h->id || h->m.data_off % h->s->page != 0 ||
        (uint64_t)h->st.st_size < h->m.data_off + h->m.segsz)
        return -MMK_ECORRUPT;
    h->have_meta = 1;
    return 0;
}

/* Rewrite 8-byte header fields, if this process may write the file. */
static void h_put64(struct handle *h, off_t off, const int64_t *v, int n)
{
    int fd = h_fd(h, 1);
    if (fd >= 0)
        mmk__sys_pwrite_all(fd, v, sizeof *v * (size_t)n, off);
}

/* ---- permissions -------------------------------------------------------------- */

static int in_group(gid_t gid)
{
    if (getegid() == gid)
        return 1;
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

/* The kernel's ipcperms(): flg's rwx bits against the segment's mode. */
static int ipc_perms(const struct stat *st, const struct mmk__shm_meta *m, int flg)
{
    uid_t euid = geteuid();
    if (euid == 0)
        return 0;
    int requested = ((flg >> 6) | (flg >> 3) | flg) & 07;
    int granted = (int)(st->st_mode & 0777);
    if (euid == st->st_uid || (m && euid == m->cuid))
        granted >>= 6;
    else if (in_group(st->st_gid) || (m && in_group(m->cgid)))
        granted >>= 3;
    return (requested & ~granted & 07) ? -EACCES : 0;
}

/* Owner, creator or root: who may IPC_SET, IPC_RMID and SHM_LOCK. */
static int owner_perms(struct handle *h)
{
    uid_t euid = geteuid();
    if (euid == 0 || euid == h->st.st_uid)
        return 0;
    if (h_meta(h) == 0 && euid == h->m.cuid)
        return 0;
    return -EPERM;
}

static int64_t now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- shmget --------------------------------------------------------------------- */

static int create(struct mmk__shm_store *s, key_t key, size_t size, int flg)
{
    struct shminfo lim;
    mmk__shm_limits_load(s, &lim);
    if (size < lim.shmmin || size > lim.shmmax)
        return -EINVAL;
    if (size > ((size_t)1 << 62))
        return -ENOSPC;
    struct mmk__shm_meta m;
    memset(&m, 0, sizeof m);
    m.key = (int32_t)key;
    m.data_off = (uint32_t)s->page;
    m.segsz = size;
    m.cuid = geteuid();
    m.cgid = getegid();
    m.cpid = mmk__shm_pid();
    m.ctime = now();
    char tmp[48];
    int fd = mmk__shm_create_file(s, &m, (mode_t)(flg & 0777), tmp, sizeof tmp);
    if (fd < 0)
        return fd;
    int r = mmk__shm_publish(s, fd, tmp, &m, (int)lim.shmmni);
    if (tmp[0])
        mmk__sys_unlinkat(s->dirfd, tmp, 0);
    mmk__sys_close(fd);
    if (r < 0)
        return r;
    char seg[32], target[16], kname[32];
    mmk__shm_seg_name(seg, sizeof seg, m.id);
    if (key != IPC_PRIVATE) {
        /* The key entry appears last and in one step: whoever links it
         * first owns the key; the others drop their file. */
        snprintf(target, sizeof target, "%d", m.id);
        mmk__shm_key_name(kname, sizeof kname, key);
        r = mmk__sys_symlinkat(target, s->dirfd, kname);
        if (r < 0) {
            mmk__sys_unlinkat(s->dirfd, seg, 0);
            return r;
        }
    }
    return m.id;
}

int mmk_shmget(key_t key, size_t size, int shmflg)
{
    struct mmk__shm_store *s;
    mmk__shm_lock();
    int r = mmk__shm_store(&s);
    if (r < 0)
        goto out;
    if (key == IPC_PRIVATE) {
        r = create(s, key, size, shmflg);
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        int id;
        uid_t kowner;
        r = mmk__shm_key_read(s, key, &id, &kowner);
        if (r == -ENOENT) {
            if (!(shmflg & IPC_CREAT))
                goto out;
            r = create(s, key, size, shmflg);
            if (r == -EEXIST && !(shmflg & IPC_EXCL) && attempt < 16)
                continue; /* lost the race: use the winner's segment */
            goto out;
        }
        if (r < 0)
            goto out;
        char name[32];
        struct stat st;
        mmk__shm_seg_name(name, sizeof name, id);
        r = mmk__sys_fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW);
        if (r == -ENOENT && attempt < 16)
            continue; /* removed between the two reads */
        if (r < 0 || !S_ISREG(st.st_mode) || st.st_uid != kowner ||
            (size_t)st.st_size < s->page) {
            r = -MMK_ECORRUPT; /* not what a key entry may point at */
            goto out;
        }
        if ((shmflg & IPC_CREAT) && (shmflg & IPC_EXCL)) {
            r = -EEXIST;
            goto out;
        }
        if (size > (size_t)st.st_size - s->page) {
            r = -EINVAL;
            goto out;
        }
        r = ipc_perms(&st, NULL, shmflg);
        if (r == 0)
            r = id;
        goto out;
    }
out:
    mmk__shm_unlock();
    return r;
}

/* ---- shmat / shmdt --------------------------------------------------------------- */

static void lock_range(void *addr, size_t len)
{
    mmk__sys_mlock(addr, len);
}

static void unlock_range(void *addr, size_t len)
{
    mmk__sys_munlock(addr, len);
}

int mmk_shmat(int shmid, const void *shmaddr, int shmflg, void **addr)
{
    if (!addr)
        return -EFAULT;
    struct mmk__shm_store *s;
    struct handle h;
    mmk__shm_lock();
    int r = mmk__shm_store(&s);
    if (r < 0)
        goto out_nohandle;
    int rdonly = (shmflg & SHM_RDONLY) != 0;
    /* The open is the access check: read, plus write unless SHM_RDONLY. */
    r = h_open(s, shmid, &h, rdonly ? WANT_READ : WANT_WRITE);
    if (r < 0)
        goto out;

    uintptr_t want = (uintptr_t)shmaddr, lba = (uintptr_t)SHMLBA;
    int mflags = MAP_SHARED;
    if (want) {
        if (want & (lba - 1)) {
            if (!(shmflg & SHM_RND)) {
                r = -EINVAL;
                goto out;
            }
            want &= ~(lba - 1);
            if (!want && (shmflg & SHM_REMAP)) {
                r = -EINVAL;
                goto out;
            }
        }
        mflags |= (shmflg & SHM_REMAP) ? MAP_FIXED : MAP_FIXED_NOREPLACE;
    } else if (shmflg & SHM_REMAP) {
        r = -EINVAL;
        goto out;
    }

    /* A read-only attach maps an O_RDONLY descriptor, so that mprotect
     * cannot make it writable (as the kernel refuses for SHM_RDONLY). */
    int mapfd;
    if (rdonly) {
        if (h.g && h.g->rfd < 0)
            h.g->rfd = reopen(h.g->wfd, O_RDONLY);
        mapfd = h.g ? h.g->rfd : h_fd(&h, 0);
    } else {
        mapfd = h_fd(&h, 1);
    }
    if (mapfd < 0) {
        r = mapfd;
        goto out;
    }
    r = h_meta(&h);
    if (r < 0)
        goto out;
    size_t len = (h.m.segsz + s->page - 1) & ~(s->page - 1);
    int prot = PROT_READ | (rdonly ? 0 : PROT_WRITE) | ((shmflg & SHM_EXEC) ? PROT_EXEC : 0);
    void *p;
    r = mmk__sys_mmap(&p, (void *)want, len, prot, mflags, mapfd, (off_t)h.m.data_off);
    if (r == -EEXIST)
        r = -EINVAL; /* overlaps a mapping and no SHM_REMAP */
    if (r < 0)
        goto out;

    struct mmk__shm_seg *g = h.g;
    if (!g) {
        g = mmk__shm_seg_add(&h.st, shmid, (key_t)h.m.key, h.rfd, h.wfd, len);
        if (!g) {
            mmk__sys_munmap(p, len);
            r = -ENOMEM;
            goto out;
        }
        h.rfd = h.wfd = -1; /* the table owns them now */
        h.g = g;
    }
    r = mmk__shm_attach_add(g, p, len);
    if (r < 0) {
        mmk__sys_munmap(p, len);
        if (g->nattach == 0)
            mmk__shm_seg_release(g);
        h.g = NULL;
        goto out;
    }
    /* A failed lock (a writer holding a conflicting lock on our range) only
     * makes shm_nattch low; the attach itself stands. */
    mmk__shm_count_set(g, g->nattach, g->nattach + 1);
    g->nattach++;
    if (g->wfd < 0 && rdonly)
        h_fd(&h, 1); /* may fail: then atime and lpid stay as they were */
    int64_t atime_lpid[2] = { now(), mmk__shm_pid() };
    h_put64(&h, MMK__SHM_OFF_ATIME, atime_lpid, 2);
    if (h.m.flags & MMK__SHM_FLAG_LOCKED)
        mmk__sys_mlock(p, len);
    *addr = p;
    r = 0;
out:
    h_close(&h);
out_nohandle:
    mmk__shm_unlock();
    return r;
}

int mmk_shmdt(const void *shmaddr)
{
    struct mmk__shm_seg *g;
    size_t len;
    mmk__shm_lock();
    int r = mmk__shm_attach_remove(shmaddr, &g, &len);
    if (r == 0) {
        mmk__sys_munmap((void *)(uintptr_t)shmaddr, len); /* shmdt(2) takes a const pointer */
        /* The last detach closes the descriptors, which drops the lock. */
        if (g->nattach > 1)
            mmk__shm_count_set(g, g->nattach, g->nattach - 1);
        g->nattach--;
        if (g->wfd >= 0) {
            int64_t lpid_dtime[2] = { mmk__shm_pid(), now() };
            mmk__sys_pwrite_all(g->wfd, lpid_dtime, sizeof lpid_dtime, MMK__SHM_OFF_LPID);
        }
        if (g->nattach == 0)
            mmk__shm_seg_release(g);
    }
    mmk__shm_unlock();
    return r;
}

/* ---- shmctl ------------------------------------------------------------------------ */

/* The key a live key entry gives this segment, or IPC_PRIVATE. */
static key_t live_key(struct handle *h)
{
    if (h->g && h->g->removed)
        return IPC_PRIVATE;
    if (h->m.key == IPC_PRIVATE)
        return IPC_PRIVATE;
    int id;
    uid_t owner;
    if (mmk__shm_key_read(h->s, h->m.key, &id, &owner) != 0 || id != h->id ||
        owner != h->st.st_uid)
        return IPC_PRIVATE; /* orphan: reported as removed */
    return h->m.key;
}

static int fill_stat(struct handle *h, struct shmid_ds *buf, int any)
{
    int r = h_meta(h);
    if (r < 0 && !(any && r == -EACCES))
        return r;
    memset(buf, 0, sizeof *buf);
    buf->shm_perm.uid = h->st.st_uid;
    buf->shm_perm.gid = h->st.st_gid;
    buf->shm_perm.mode = (unsigned short)(h->st.st_mode & 0777);
    if (r < 0) {
        /* SHM_STAT_ANY of a segment the caller may not read: what the file
         * itself shows (its size; no header, no attach count). */
        buf->shm_segsz = (size_t)h->st.st_size - h->s->page;
        buf->shm_perm.cuid = h->st.st_uid;
        buf->shm_perm.cgid = h->st.st_gid;
        key_t k;
        if (mmk__shm_key_of(h->s, h->id, &k) == 0)
            buf->shm_perm.__key = k;
        return 0;
    }
    key_t key = live_key(h);
    buf->shm_perm.__key = key;
    buf->shm_perm.cuid = h->m.cuid;
    buf->shm_perm.cgid = h->m.cgid;
    if (h->m.flags & MMK__SHM_FLAG_LOCKED)
        buf->shm_perm.mode |= SHM_LOCKED;
    if (key == IPC_PRIVATE && (h->m.key != IPC_PRIVATE || (h->g && h->g->removed)))
        buf->shm_perm.mode |= SHM_DEST;
    buf->shm_segsz = h->m.segsz;
    buf->shm_atime = (time_t)h->m.atime;
    buf->shm_dtime = (time_t)h->m.dtime;
    buf->shm_ctime = (time_t)h->m.ctime;
    buf->shm_cpid = h->m.cpid;
    buf->shm_lpid = (pid_t)h->m.lpid;
    buf->shm_nattch = mmk__shm_nattch(h_fd(h, 0), h->g ? h->g->nattach : 0);
    return 0;
}

static int do_rmid(struct handle *h)
{
    int r = owner_perms(h);
    if (r < 0)
        return r;
    if (h->g && h->g->removed)
        return 0;
    key_t key = IPC_PRIVATE;
    if (h_meta(h) == 0)
        key = (key_t)h->m.key;
    else
        mmk__shm_key_of(h->s, h->id, &key);
    char name[32];
    if (key != IPC_PRIVATE) {
        int id;
        /* The key stops resolving first; the file goes next.  A crash in
         * between leaves a file no key points at: an orphan, listed as
         * removed, that IPC_RMID by id removes. */
        if (mmk__shm_key_read(h->s, key, &id, NULL) == 0 && id == h->id) {
            mmk__shm_key_name(name, sizeof name, key);
            r = mmk__sys_unlinkat(h->s->dirfd, name, 0);
            if (r < 0)
                return r;
        }
    }
    mmk__shm_seg_name(name, sizeof name, h->id);
    r = mmk__sys_unlinkat(h->s->dirfd, name, 0);
    if (r < 0)
        return r;
    if (h->g)
        h->g->removed = 1;
    return 0;
}

static int do_set(struct handle *h, const struct shmid_ds *buf)
{
    int r = owner_perms(h);
    if (r < 0)
        return r;
    char proc[64];
    int fd = h->opath >= 0 ? h->opath : (h->g->rfd >= 0 ? h->g->rfd : h->g->wfd);
    if (h->opath < 0 && !h->g)
        return -EBADF;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    uid_t uid = buf->shm_perm.uid;
    gid_t gid = buf->shm_perm.gid;
    if (uid != h->st.st_uid || gid != h->st.st_gid) {
        if (uid != h->st.st_uid && h_meta(h) == 0 && live_key(h) != IPC_PRIVATE) {
            /* The key entry's owner follows the file's. */
            char name[32];
            mmk__shm_key_name(name, sizeof name, (key_t)h->m.key);
            r = mmk__sys_lchownat(h->s->dirfd, name, uid, (gid_t)-1);
            if (r < 0)
                return r;
        }
        r = mmk__sys_chown(proc, uid, gid);
        if (r < 0)
            return r;
    }
    r = mmk__sys_chmod(proc, buf->shm_perm.mode & 0777);
    if (r < 0)
        return r;
    int64_t ctime = now();
    h_put64(h, MMK__SHM_OFF_CTIME, &ctime, 1);
    return 0;
}

static int do_lock(struct handle *h, int lock)
{
    int r = owner_perms(h);
    if (r < 0)
        return r;
    r = h_meta(h);
    if (r < 0)
        return r;
    int fd = h_fd(h, 1);
    if (fd < 0)
        return fd == -EACCES ? -EPERM : fd;
    uint32_t flags = lock ? (h->m.flags | MMK__SHM_FLAG_LOCKED) : (h->m.flags & ~MMK__SHM_FLAG_LOCKED);
    r = mmk__sys_pwrite_all(fd, &flags, sizeof flags, MMK__SHM_OFF_FLAGS);
    if (r < 0)
        return r;
    if (h->g)
        mmk__shm_attach_each(h->g, lock ? lock_range : unlock_range);
    return 0;
}

struct scan {
    struct mmk__shm_store *s;
    int maxid;
    unsigned long used, pages, rss;
};

static int scan_one(int id, void *ctx)
{
    struct scan *sc = ctx;
    char name[32];
    struct stat st;
    mmk__shm_seg_name(name, sizeof name, id);
    if (mmk__sys_fstatat(sc->s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || (size_t)st.st_size < sc->s->page)
        return 0;
    if (id > sc->maxid)
        sc->maxid = id;
    sc->used++;
    size_t seg = (size_t)st.st_size - sc->s->page;
    sc->pages += (seg + sc->s->page - 1) / sc->s->page;
    sc->rss += (unsigned long)st.st_blocks * 512 / sc->s->page;
    return 0;
}

int mmk_shmctl(int shmid, int cmd, struct shmid_ds *buf)
{
    struct mmk__shm_store *s;
    struct handle h;
    int r;
    mmk__shm_lock();
    r = mmk__shm_store(&s);
    if (r < 0)
        goto out_nohandle;
    if (cmd == IPC_INFO || cmd == SHM_INFO) {
        if (!buf) {
            r = -EFAULT;
            goto out_nohandle;
        }
        struct scan sc = { .s = s, .maxid = 0 };
        r = mmk__shm_each(s, scan_one, &sc);
        if (r < 0)
            goto out_nohandle;
        if (cmd == IPC_INFO) {
            mmk__shm_limits_load(s, (struct shminfo *)buf);
        } else {
            struct shm_info *si = (struct shm_info *)buf;
            memset(si, 0, sizeof *si);
            si->used_ids = (int)sc.used;
            si->shm_tot = sc.pages;
            si->shm_rss = sc.rss;
        }
        r = sc.maxid;
        goto out_nohandle;
    }
    switch (cmd) {
    case IPC_STAT: case SHM_STAT: case SHM_STAT_ANY: case IPC_SET: case IPC_RMID:
    case SHM_LOCK: case SHM_UNLOCK:
        break;
    default:
        r = -EINVAL;
        goto out_nohandle;
    }
    int stat = cmd == IPC_STAT || cmd == SHM_STAT || cmd == SHM_STAT_ANY;
    r = h_open(s, shmid, &h, stat ? WANT_READ : WANT_PATH);
    if (r == -EACCES && stat) /* a 0 mode: fill_stat says what may be said */
        r = h_open(s, shmid, &h, WANT_PATH);
    if (r < 0)
        goto out;
    switch (cmd) {
    case IPC_STAT:
    case SHM_STAT:
    case SHM_STAT_ANY:
        if (!buf) {
            r = -EFAULT;
            break;
        }
        r = fill_stat(&h, buf, cmd == SHM_STAT_ANY);
        if (r == 0 && cmd != IPC_STAT)
            r = shmid;
        break;
    case IPC_SET:
        r = buf ? do_set(&h, buf) : -EFAULT;
        break;
    case IPC_RMID:
        r = do_rmid(&h);
        break;
    default:
        r = do_lock(&h, cmd == SHM_LOCK);
        break;
    }
out:
    h_close(&h);
out_nohandle:
    mmk__shm_unlock();
    return r;
}

/* ---- limits --------------------------------------------------------------------- */

int mmk_shm_limits(struct shminfo *lim)
{
    struct mmk__shm_store *s;
    if (!lim)
        return -EFAULT;
    mmk__shm_lock();
    int r = mmk__shm_store(&s);
    if (r == 0)
        mmk__shm_limits_load(s, lim);
    mmk__shm_unlock();
    return r;
}

int mmk_shm_set_limits(const struct shminfo *lim)
{
    struct mmk__shm_store *s;
    if (!lim)
        return -EFAULT;
    if (lim->shmmax < 1 || lim->shmmni < 1 || lim->shmmni > MMK__SHM_MAX_IDS || lim->shmall < 1)
        return -EINVAL;
    mmk__shm_lock();
    int r = mmk__shm_store(&s);
    if (r == 0)
        r = mmk__shm_limits_store(s, lim);
    mmk__shm_unlock();
    return r;
}

int mmk_shm_dir(char *buf, size_t len)
{
    const char *env = getenv("MMKIT_SHM_DIR");
    const char *path = env && *env ? env : MMK__SHM_DEFAULT_DIR;
    if (!buf || strlen(path) >= len)
        return -ERANGE;
    strcpy(buf, path);
    return 0;
}
