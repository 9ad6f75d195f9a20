/*
 * shm_store.c - the store directory of SysV shm over files: opening and
 * checking it, the names of its entries, the segment header and the limits
 * file (both parsed as untrusted input), creating and publishing files.
 *
 * Nothing here follows a symlink or opens a name outside the directory: every
 * open is openat(dirfd, name, O_NOFOLLOW).  The directory itself must be
 * owned by root or the caller, and if others may write it, it must be sticky
 * (then only an entry's owner or root can remove or rename it).
 */
#include "shm.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- on-disk formats ------------------------------------------------------ */

void mmk__shm_hdr_encode(const struct mmk__shm_meta *m, unsigned char *out)
{
    uint32_t version = 1;
    memset(out, 0, MMK__SHM_HDR_BYTES);
    memcpy(out, MMK__SHM_MAGIC, 8);
    memcpy(out + 8, &version, 4);
    memcpy(out + 12, &m->data_off, 4);
    memcpy(out + 16, &m->key, 4);
    memcpy(out + MMK__SHM_OFF_ID, &m->id, 4);
    memcpy(out + 24, &m->segsz, 8);
    memcpy(out + 32, &m->cuid, 4);
    memcpy(out + 36, &m->cgid, 4);
    memcpy(out + 40, &m->cpid, 4);
    memcpy(out + MMK__SHM_OFF_FLAGS, &m->flags, 4);
    memcpy(out + MMK__SHM_OFF_CTIME, &m->ctime, 8);
    memcpy(out + MMK__SHM_OFF_LPID, &m->lpid, 8);
    memcpy(out + MMK__SHM_OFF_ATIME, &m->atime, 8);
    memcpy(out + MMK__SHM_OFF_DTIME, &m->dtime, 8);
}

int mmk__shm_hdr_parse(const void *buf, size_t len, struct mmk__shm_meta *out)
{
    const unsigned char *p = buf;
    struct mmk__shm_meta m;
    uint32_t version;
    if (len < MMK__SHM_HDR_BYTES || memcmp(p, MMK__SHM_MAGIC, 8) != 0)
        return -MMK_ECORRUPT;
    memcpy(&version, p + 8, 4);
    memcpy(&m.data_off, p + 12, 4);
    memcpy(&m.key, p + 16, 4);
    memcpy(&m.id, p + MMK__SHM_OFF_ID, 4);
    memcpy(&m.segsz, p + 24, 8);
    memcpy(&m.cuid, p + 32, 4);
    memcpy(&m.cgid, p + 36, 4);
    memcpy(&m.cpid, p + 40, 4);
    memcpy(&m.flags, p + MMK__SHM_OFF_FLAGS, 4);
    memcpy(&m.ctime, p + MMK__SHM_OFF_CTIME, 8);
    memcpy(&m.lpid, p + MMK__SHM_OFF_LPID, 8);
    memcpy(&m.atime, p + MMK__SHM_OFF_ATIME, 8);
    memcpy(&m.dtime, p + MMK__SHM_OFF_DTIME, 8);
    if (version != 1)
        return -MMK_ECORRUPT;
    /* A power of two from 4 KiB to 1 MiB: a page size. */
    if (m.data_off < 4096 || m.data_off > (1u << 20) || (m.data_off & (m.data_off - 1)))
        return -MMK_ECORRUPT;
    if (m.id < 0 || m.id >= MMK__SHM_MAX_IDS)
        return -MMK_ECORRUPT;
    if (m.segsz == 0 || m.segsz > ((uint64_t)1 << 62))
        return -MMK_ECORRUPT;
    if (m.flags & ~(uint32_t)MMK__SHM_FLAG_LOCKED)
        return -MMK_ECORRUPT;
    /* Times and pids are reported, never used: any value is only a lie about
     * the past, so clamp rather than reject (a writer may have scribbled). */
    if (m.cpid < 0)
        m.cpid = 0;
    if (m.lpid < 0 || m.lpid > INT_MAX)
        m.lpid = 0;
    *out = m;
    return 0;
}

void mmk__shm_limits_default(struct shminfo *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->shmmax = (unsigned long)-1 - (1ul << 24);  /* the kernel's SHMMAX */
    lim->shmmin = 1;
    lim->shmmni = 4096;
    lim->shmseg = 4096;
    lim->shmall = (unsigned long)-1 - (1ul << 24);
}

/* Parse an unsigned decimal number of at most 20 digits; *end past it. */
static int parse_ulong(const char *p, const char *lim, unsigned long *v, const char **end)
{
    unsigned long x = 0;
    const char *q = p;
    while (q < lim && *q >= '0' && *q <= '9') {
        unsigned d = (unsigned)(*q - '0');
        if (x > (ULONG_MAX - d) / 10)
            return -MMK_ECORRUPT;
        x = x * 10 + d;
        q++;
    }
    if (q == p)
        return -MMK_ECORRUPT;
    *v = x;
    *end = q;
    return 0;
}

int mmk__shm_limits_parse(const char *buf, size_t len, struct shminfo *lim)
{
    struct shminfo out = *lim;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (le == p || *p == '#') {
            p = eol ? eol + 1 : end;
            continue;
        }
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        if (!sp)
            return -MMK_ECORRUPT;
        size_t nlen = (size_t)(sp - p);
        unsigned long v;
        const char *q;
        if (parse_ulong(sp + 1, le, &v, &q) != 0 || q != le)
            return -MMK_ECORRUPT;
        if (nlen == 6 && !memcmp(p, "shmmax", 6) && v >= 1)
            out.shmmax = v;
        else if (nlen == 6 && !memcmp(p, "shmmni", 6) && v >= 1 && v <= MMK__SHM_MAX_IDS)
            out.shmmni = v;
        else if (nlen == 6 && !memcmp(p, "shmall", 6) && v >= 1)
            out.shmall = v;
        else
            return -MMK_ECORRUPT;
        p = eol ? eol + 1 : end;
    }
    *lim = out;
    return 0;
}

int mmk__shm_parse_id(const char *s, int *id)
{
    long v = 0;
    int n = 0;
    if (s[0] == '0' && s[1] != '\0')
        return -MMK_ECORRUPT; /* one spelling per id */
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        v = v * 10 + (s[n] - '0');
        if (v >= MMK__SHM_MAX_IDS)
            return -MMK_ECORRUPT;
    }
    if (n == 0 || s[n] != '\0')
        return -MMK_ECORRUPT;
    *id = (int)v;
    return 0;
}

void mmk__shm_seg_name(char *buf, size_t len, int id)
{
    snprintf(buf, len, "s.%d", id);
}

void mmk__shm_key_name(char *buf, size_t len, key_t key)
{
    snprintf(buf, len, "k.%08x", (unsigned)key);
}

/* ---- the directory -------------------------------------------------------- */

static struct mmk__shm_store store = { .dirfd = -1 };

/* The default store: created by root on first use, set up like /dev/shm. */
static int make_default_dir(void)
{
    if (geteuid() != 0)
        return -ENOENT;
    int r = mmk__sys_mkdir("/var/lib/mmkit", 0755);
    if (r < 0 && r != -EEXIST)
        return r;
    r = mmk__sys_mkdir(MMK__SHM_DEFAULT_DIR, 0700);
    if (r < 0)
        return r == -EEXIST ? 0 : r;
    return mmk__sys_chmod(MMK__SHM_DEFAULT_DIR, 01777);
}

static int check_dir(int fd, struct stat *st)
{
    int r = mmk__sys_fstat(fd, st);
    if (r < 0)
        return r;
    if (!S_ISDIR(st->st_mode))
        return -ENOTDIR;
    /* Someone else's directory can be emptied or swapped under us. */
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return -EPERM;
    /* Writable by others and not sticky: anyone could remove or replace
     * any segment.  Refused. */
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
        return -EPERM;
    return 0;
}

int mmk__shm_store(struct mmk__shm_store **out)
{
    const char *env = getenv("MMKIT_SHM_DIR");
    int is_default = !(env && *env);
    const char *path = is_default ? MMK__SHM_DEFAULT_DIR : env;
    if (strlen(path) >= sizeof store.path)
        return -ENAMETOOLONG;
    if (store.dirfd >= 0 && strcmp(path, store.path) == 0) {
        *out = &store;
        return 0;
    }
    int fd = mmk__sys_open(path, O_RDONLY | O_DIRECTORY, 0);
    if (fd == -ENOENT && is_default) {
        int r = make_default_dir();
        if (r < 0)
            return r;
        fd = mmk__sys_open(path, O_RDONLY | O_DIRECTORY, 0);
    }
    if (fd < 0)
        return fd;
    struct stat st;
    int r = check_dir(fd, &st);
    if (r < 0) {
        mmk__sys_close(fd);
        return r;
    }
    if (store.dirfd >= 0)
        mmk__sys_close(store.dirfd);
    store.dirfd = fd;
    store.owner = st.st_uid;
    store.page = mmk__page_size();
    strcpy(store.path, path);
    *out = &store;
    return 0;
}

int mmk__shm_key_read(struct mmk__shm_store *s, key_t key, int *id, uid_t *owner)
{
    char name[32], target[32];
    mmk__shm_key_name(name, sizeof name, key);
    int n = mmk__sys_readlinkat(s->dirfd, name, target, sizeof target);
    if (n == -EINVAL)
        return -MMK_ECORRUPT; /* a name that is not a symlink */
    if (n < 0)
        return n;
    if (mmk__shm_parse_id(target, id) != 0)
        return -MMK_ECORRUPT;
    if (owner) {
        struct stat st;
        int r = mmk__sys_fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW);
        if (r < 0)
            return r;
        *owner = st.st_uid;
    }
    return 0;
}

/* ---- limits --------------------------------------------------------------- */

void mmk__shm_limits_load(struct mmk__shm_store *s, struct shminfo *lim)
{
    mmk__shm_limits_default(lim);
    int fd = mmk__sys_openat(s->dirfd, "limits", O_RDONLY | O_NOFOLLOW | O_NONBLOCK, 0);
    if (fd < 0)
        return;
    struct stat st;
    char buf[512];
    ssize_t n = -1;
    if (mmk__sys_fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_uid == 0 || st.st_uid == s->owner) && !(st.st_mode & (S_IWGRP | S_IWOTH)))
        n = mmk__sys_pread(fd, buf, sizeof buf, 0);
    mmk__sys_close(fd);
    struct shminfo parsed = *lim;
    if (n >= 0 && (size_t)n < sizeof buf && mmk__shm_limits_parse(buf, (size_t)n, &parsed) == 0)
        *lim = parsed;
}

static void random_name(char *buf, size_t len, char prefix)
{
    unsigned char r[8] = { 0 };
    if (mmk__sys_getrandom(r, sizeof r) < 0) {
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;
        memcpy(r, &t, sizeof r);
    }
    snprintf(buf, len, "%c.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
}

int mmk__shm_limits_store(struct mmk__shm_store *s, const struct shminfo *lim)
{
    if (geteuid() != 0 && geteuid() != s->owner)
        return -EPERM;
    char text[160], tmp[40];
    int len = snprintf(text, sizeof text, "shmmax %lu\nshmmni %lu\nshmall %lu\n",
                       lim->shmmax, lim->shmmni, lim->shmall);
    random_name(tmp, sizeof tmp, 'l');
    int fd = mmk__sys_openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
    if (fd < 0)
        return fd;
    int r = mmk__sys_write_all(fd, text, (size_t)len);
    if (r == 0)
        r = mmk__sys_fsync(fd);
    mmk__sys_close(fd);
    if (r == 0)
        r = mmk__sys_renameat(s->dirfd, tmp, s->dirfd, "limits");
    if (r < 0)
        mmk__sys_unlinkat(s->dirfd, tmp, 0);
    return r;
}

/* ---- creating and publishing segment files -------------------------------- */

int mmk__shm_create_file(struct mmk__shm_store *s, struct mmk__shm_meta *m, mode_t mode,
                         char *tmpname, size_t tmplen)
{
    /* O_TMPFILE: the file has no name until it is complete, so a crash
     * leaves nothing behind.  Filesystems without it get a random name. */
    tmpname[0] = '\0';
    int fd = mmk__sys_openat(s->dirfd, ".", O_TMPFILE | O_RDWR, 0600);
    if (fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL) {
        random_name(tmpname, tmplen, 's');
        fd = mmk__sys_openat(s->dirfd, tmpname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
        if (fd < 0)
            tmpname[0] = '\0';
    }
    if (fd < 0)
        return fd;
    unsigned char hdr[MMK__SHM_HDR_BYTES];
    mmk__shm_hdr_encode(m, hdr);
    /* Reserve the blocks now: a full disk is ENOSPC here, not SIGBUS on a
     * touch later.  Filesystems without fallocate get a sparse file. */
    off_t total = (off_t)m->data_off + (off_t)m->segsz;
    int r = mmk__sys_fallocate(fd, 0, 0, total);
    if (r == -EOPNOTSUPP)
        r = mmk__sys_ftruncate(fd, total);
    if (r == 0)
        r = mmk__sys_pwrite_all(fd, hdr, sizeof hdr, 0);
    /* SysV modes ignore the umask. */
    if (r == 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        r = mmk__sys_chmod(proc, mode & 0777);
    }
    if (r < 0) {
        if (tmpname[0])
            mmk__sys_unlinkat(s->dirfd, tmpname, 0);
        mmk__sys_close(fd);
        return r == -EFBIG ? -ENOSPC : r;
    }
    return fd;
}

int mmk__shm_publish(struct mmk__shm_store *s, int fd, const char *tmpname,
                     struct mmk__shm_meta *m, int shmmni)
{
    char proc[64], name[32];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    unsigned start = 0;
    mmk__sys_getrandom(&start, sizeof start);
    for (int i = 0; i < shmmni; i++) {
        int id = (int)((start + (unsigned)i) % (unsigned)shmmni);
        m->id = id;
        int r = mmk__sys_pwrite_all(fd, &m->id, sizeof m->id, MMK__SHM_OFF_ID);
        if (r < 0)
            return r;
        mmk__shm_seg_name(name, sizeof name, id);
        if (tmpname[0])
            r = mmk__sys_linkat(s->dirfd, tmpname, s->dirfd, name, 0);
        else
            r = mmk__sys_linkat(AT_FDCWD, proc, s->dirfd, name, AT_SYMLINK_FOLLOW);
        if (r == 0)
            return 0;
        if (r != -EEXIST)
            return r;
    }
    return -ENOSPC;
}

/* ---- scanning --------------------------------------------------------------- */

int mmk__shm_each(struct mmk__shm_store *s, int (*fn)(int id, void *ctx), void *ctx)
{
    int fd = mmk__sys_openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    char buf[8192] __attribute__((aligned(8)));
    int r = 0;
    for (;;) {
        int n = mmk__sys_getdents(fd, buf, sizeof buf);
        if (n <= 0) {
            r = n;
            break;
        }
        for (int off = 0; off < n;) {
            /* struct linux_dirent64: ino, off, reclen, type, name */
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char *nm = buf + off + 19;
            int id;
            if (nm[0] == 's' && nm[1] == '.' && mmk__shm_parse_id(nm + 2, &id) == 0) {
                r = fn(id, ctx);
                if (r)
                    goto out;
            }
            off += reclen;
        }
    }
out:
    mmk__sys_close(fd);
    return r;
}

int mmk__shm_key_of(struct mmk__shm_store *s, int id, key_t *key)
{
    int fd = mmk__sys_openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    char buf[8192] __attribute__((aligned(8)));
    int r = -ENOENT;
    for (;;) {
        int n = mmk__sys_getdents(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (int off = 0; off < n && r == -ENOENT;) {
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof reclen);
            const char *nm = buf + off + 19;
            off += reclen;
            if (nm[0] != 'k' || nm[1] != '.' || strlen(nm) != 10)
                continue;
            char *end;
            unsigned long k = strtoul(nm + 2, &end, 16);
            int kid;
            if (*end == '\0' && mmk__shm_key_read(s, (key_t)k, &kid, NULL) == 0 && kid == id) {
                *key = (key_t)k;
                r = 0;
            }
        }
        if (r == 0)
            break;
    }
    mmk__sys_close(fd);
    return r;
}
