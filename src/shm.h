/*
 * shm.h - internals of SysV shm over files, shared by src/shm_store.c (the
 * directory, names and on-disk formats) and src/shm.c (the four calls).
 *
 * The store is one directory.  Its entries:
 *
 *   s.<id>     the segment file: a header page, then the segment's bytes.
 *              Owner, group and mode are the segment's.  id is decimal,
 *              0 <= id < shmmni.
 *   k.<key>    a symlink (never followed) whose target is "<id>": the key's
 *              entry.  key is 8 lowercase hex digits.  Its owner must be the
 *              segment file's owner, else the entry is not trusted.
 *   limits     optional text file of limits, trusted only when owned by root
 *              or the directory's owner and writable by no one else.
 *
 * Every entry appears with one atomic system call (linkat, symlinkat,
 * renameat) and goes with one (unlinkat), so a process killed at any point
 * leaves every name either absent or complete.
 */
#ifndef MMK_SHM_H
#define MMK_SHM_H

#include "mmkit.h"

#include <stdint.h>
#include <sys/stat.h>

#define MMK__SHM_DEFAULT_DIR "/var/lib/mmkit/shm"
#define MMK__SHM_MAGIC "MMKSHM01"
enum { MMK__SHM_HDR_BYTES = 128, MMK__SHM_MAX_IDS = 32768 };
enum { MMK__SHM_FLAG_LOCKED = 1u };

/* Byte offsets of the header fields that are rewritten after creation. */
enum {
    MMK__SHM_OFF_ID = 20,
    MMK__SHM_OFF_FLAGS = 44,
    MMK__SHM_OFF_CTIME = 48,
    /* atime, lpid, dtime in this order: an attach rewrites atime+lpid and a
     * detach lpid+dtime, each with one write. */
    MMK__SHM_OFF_ATIME = 56,
    MMK__SHM_OFF_LPID = 64,
    MMK__SHM_OFF_DTIME = 72,
};

/* The header of a segment file, decoded. */
struct mmk__shm_meta {
    int32_t key;
    int32_t id;
    uint32_t data_off; /* where the segment's bytes start: the page size */
    uint64_t segsz;
    uint32_t cuid, cgid;
    int32_t cpid;
    uint32_t flags;
    int64_t ctime;
    int64_t lpid;
    int64_t atime, dtime;
};

/* Encode m into out (MMK__SHM_HDR_BYTES bytes, native byte order). */
void mmk__shm_hdr_encode(const struct mmk__shm_meta *m, unsigned char *out);
/* Decode and check a header read from a file anyone with write access may
 * have scribbled on.  0, or -MMK_ECORRUPT. */
int mmk__shm_hdr_parse(const void *buf, size_t len, struct mmk__shm_meta *out);
/* Parse a limits file's text ("shmmax N", "shmmni N", "shmall N" lines;
 * unknown names are errors).  Fields not given keep their value in *lim.
 * 0, or -MMK_ECORRUPT. */
int mmk__shm_limits_parse(const char *buf, size_t len, struct shminfo *lim);
/* Parse a decimal id 0 <= id < MMK__SHM_MAX_IDS with nothing after it. */
int mmk__shm_parse_id(const char *s, int *id);
/* The kernel's defaults, with shmmni 4096. */
void mmk__shm_limits_default(struct shminfo *lim);

/* The store directory, opened and checked. */
struct mmk__shm_store {
    int dirfd;     /* O_DIRECTORY, O_CLOEXEC */
    uid_t owner;
    size_t page;
    char path[4096];
};

/* The store for $MMKIT_SHM_DIR (or the default), opened once and reopened
 * when the variable changes.  Caller holds the shm lock.  0 or -errno
 * (-EPERM: unsafe directory; -ENOENT: missing). */
int mmk__shm_store(struct mmk__shm_store **out);
/* Names of entries: "s.<id>", "k.<8 hex>". */
void mmk__shm_seg_name(char *buf, size_t len, int id);
void mmk__shm_key_name(char *buf, size_t len, key_t key);
/* Read the key entry: *id, and the entry's owner.  -ENOENT if absent,
 * -MMK_ECORRUPT if it is not a symlink to a valid id. */
int mmk__shm_key_read(struct mmk__shm_store *s, key_t key, int *id, uid_t *owner);
/* Load the limits (defaults when the file is absent or untrusted). */
void mmk__shm_limits_load(struct mmk__shm_store *s, struct shminfo *lim);
int mmk__shm_limits_store(struct mmk__shm_store *s, const struct shminfo *lim);
/* A new segment file, not yet visible: header written, space allocated.
 * Returns an O_RDWR fd; *tmpname is "" (O_TMPFILE) or the random name it
 * has in the directory until published. */
int mmk__shm_create_file(struct mmk__shm_store *s, struct mmk__shm_meta *m, mode_t mode,
                         char *tmpname, size_t tmplen);
/* Give the file a free id below shmmni (rewriting the header's id) and
 * link it as s.<id>.  0, or -ENOSPC when every id is taken. */
int mmk__shm_publish(struct mmk__shm_store *s, int fd, const char *tmpname,
                     struct mmk__shm_meta *m, int shmmni);
/* Call fn(id, ctx) for every s.<id> in the store; stops at a non-zero return. */
int mmk__shm_each(struct mmk__shm_store *s, int (*fn)(int id, void *ctx), void *ctx);
/* Find the key entry pointing at id (scans the directory).  -ENOENT if none. */
int mmk__shm_key_of(struct mmk__shm_store *s, int id, key_t *key);


/* ---- this process's attachments (src/shm_attach.c) ----------------------- */

/*
 * One attached segment file in this process.  Its descriptors stay open
 * until the last detach: attach counts are POSIX record locks, one range per
 * process (see shm_attach.c), and closing any descriptor of the file would
 * drop them.  So while a file is in this table, every call uses these
 * descriptors and opens no other.
 */
struct mmk__shm_seg {
    struct mmk__shm_seg *next;
    dev_t dev;
    ino_t ino;
    int id;
    key_t key;
    int rfd;          /* O_RDONLY, or -1 */
    int wfd;          /* O_RDWR, or -1 */
    unsigned nattach; /* attaches in this process */
    int removed;      /* IPC_RMID seen by this process */
    size_t maplen;    /* segment size rounded up to pages */
    int spare[4];     /* more descriptors of the file, closed on release */
    int nspare;
};

/* The one lock of all shm state in this process (also held across fork). */
void mmk__shm_lock(void);
void mmk__shm_unlock(void);
/* getpid(), cached (and renewed in a fork child). */
pid_t mmk__shm_pid(void);
/* Keep fd (a descriptor of g's file) open until g is released. */
void mmk__shm_seg_keep(struct mmk__shm_seg *g, int fd);
/* The live (not removed) entry with this id, or NULL. */
struct mmk__shm_seg *mmk__shm_seg_by_id(int id);
/* The table entry for a file, or NULL. */
struct mmk__shm_seg *mmk__shm_seg_find(dev_t dev, ino_t ino);
/* A removed entry with this id, or NULL. */
struct mmk__shm_seg *mmk__shm_seg_removed(int id);
/* Add an entry (takes the descriptors).  NULL: -ENOMEM. */
struct mmk__shm_seg *mmk__shm_seg_add(const struct stat *st, int id, key_t key, int rfd, int wfd,
                                      size_t maplen);
/* Record one more attach at addr; 0 or -ENOMEM. */
int mmk__shm_attach_add(struct mmk__shm_seg *g, void *addr, size_t len);
/* Forget the attach at addr: *g its segment, *len its length.  -EINVAL if
 * addr is no attach address.  The segment is not released (see below). */
int mmk__shm_attach_remove(const void *addr, struct mmk__shm_seg **g, size_t *len);
/* Release an entry whose nattach is 0 (closes its descriptors). */
void mmk__shm_seg_release(struct mmk__shm_seg *g);
/* Call fn on each attach of g (mlock/munlock). */
void mmk__shm_attach_each(struct mmk__shm_seg *g, void (*fn)(void *addr, size_t len));
/* The attach count of the file behind fd as every process sees it:
 * other processes' lock ranges plus own (own_nattach). */
unsigned long mmk__shm_nattch(int fd, unsigned own_nattach);
/* Move this process's lock range for g from old to new attaches. */
int mmk__shm_count_set(struct mmk__shm_seg *g, unsigned old_n, unsigned new_n);

#endif
