/*
 * shm_attach.c - this process's attachments, and attach counts that survive
 * crashes.
 *
 * shm_nattch must be right even when an attacher is killed with -9, so it is
 * not stored anywhere a dead process could leave it wrong.  Each attaching
 * process holds a POSIX record lock (F_SETLK, F_RDLCK) on a range of the
 * segment file far past its end: the range starting at LOCK_BASE + pid *
 * LOCK_STRIDE, one byte per attach.  The kernel drops a process's locks when
 * it exits, is killed or execs (the descriptors are close-on-exec), which is
 * exactly when SysV detaches.  Counting is F_GETLK over the lock space:
 * every lock found is one process, its length the number of its attaches.
 *
 * Record locks are not inherited across fork(), but SysV attaches are: the
 * child handler of pthread_atfork takes the child's own ranges.  A process
 * made with vfork/posix_spawn that execs at once needs nothing.
 *
 * The catch of POSIX locks: closing any descriptor of a file drops all of the
 * process's locks on it.  So a file in this table is only ever used through
 * the descriptors kept here (see mmk__shm_seg).
 */
#include "shm.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCK_BASE ((off_t)1 << 40)
#define LOCK_STRIDE ((off_t)1 << 20)
#define LOCK_END (LOCK_BASE + ((off_t)1 << 22) * LOCK_STRIDE) /* pid_max 2^22 */

struct attach {
    struct attach *next;
    void *addr;
    size_t len;
    struct mmk__shm_seg *seg;
};

static pthread_mutex_t shm_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static struct mmk__shm_seg *segs;
static struct attach *attaches;
static pid_t cached_pid;

pid_t mmk__shm_pid(void)
{
    if (!cached_pid)
        cached_pid = getpid();
    return cached_pid;
}

static int lock_fd(const struct mmk__shm_seg *g)
{
    return g->rfd >= 0 ? g->rfd : g->wfd;
}

static int count_set_pid(struct mmk__shm_seg *g, pid_t pid, unsigned old_n, unsigned new_n)
{
    if (old_n == new_n)
        return 0;
    if (new_n >= LOCK_STRIDE)
        return -EMFILE;
    off_t base = LOCK_BASE + (off_t)pid * LOCK_STRIDE;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_whence = SEEK_SET;
    if (new_n > old_n) {
        fl.l_type = F_RDLCK;
        fl.l_start = base + old_n;
        fl.l_len = (off_t)(new_n - old_n);
    } else {
        fl.l_type = F_UNLCK;
        fl.l_start = base + new_n;
        fl.l_len = (off_t)(old_n - new_n);
    }
    return mmk__sys_fcntl_lock(lock_fd(g), F_SETLK, &fl);
}

int mmk__shm_count_set(struct mmk__shm_seg *g, unsigned old_n, unsigned new_n)
{
    return count_set_pid(g, mmk__shm_pid(), old_n, new_n);
}

unsigned long mmk__shm_nattch(int fd, unsigned own_nattach)
{
    /* F_GETLK reports one conflicting lock in a range, not necessarily the
     * lowest; split the range around each lock found.  Own locks never
     * conflict, so they are not seen: own_nattach adds them. */
    struct { off_t start, end; } stack[64];
    int top = 0;
    unsigned long n = own_nattach;
    stack[top].start = LOCK_BASE;
    stack[top].end = LOCK_END;
    top++;
    while (top > 0) {
        top--;
        off_t start = stack[top].start, end = stack[top].end;
        if (start >= end)
            continue;
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = start;
        fl.l_len = end - start;
        if (mmk__sys_fcntl_lock(fd, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK)
            continue;
        off_t s = fl.l_start < start ? start : fl.l_start;
        off_t e = fl.l_len == 0 || fl.l_start + fl.l_len > end ? end : fl.l_start + fl.l_len;
        if (e <= s)
            continue;
        /* A lock longer than one process's range is not ours (someone with
         * read access placed it): it counts once. */
        n += (e - s) < LOCK_STRIDE ? (unsigned long)(e - s) : 1;
        if (top + 2 > (int)(sizeof stack / sizeof stack[0]))
            break;
        stack[top].start = start;
        stack[top].end = s;
        top++;
        stack[top].start = e;
        stack[top].end = end;
        top++;
    }
    return n;
}

/* ---- fork ------------------------------------------------------------------ */

static void fork_prepare(void)
{
    pthread_mutex_lock(&shm_mutex);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&shm_mutex);
}

static void fork_child(void)
{
    /* The child inherited the mappings and descriptors, not the locks. */
    cached_pid = 0;
    pid_t pid = mmk__shm_pid();
    for (struct mmk__shm_seg *g = segs; g; g = g->next)
        count_set_pid(g, pid, 0, g->nattach);
    pthread_mutex_unlock(&shm_mutex);
}

static void atfork_register(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void mmk__shm_lock(void)
{
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&shm_mutex);
}

void mmk__shm_unlock(void)
{
    pthread_mutex_unlock(&shm_mutex);
}

/* ---- the table --------------------------------------------------------------- */

struct mmk__shm_seg *mmk__shm_seg_find(dev_t dev, ino_t ino)
{
    for (struct mmk__shm_seg *g = segs; g; g = g->next)
        if (g->dev == dev && g->ino == ino)
            return g;
    return NULL;
}

struct mmk__shm_seg *mmk__shm_seg_by_id(int id)
{
    for (struct mmk__shm_seg *g = segs; g; g = g->next)
        if (g->id == id && !g->removed)
            return g;
    return NULL;
}

void mmk__shm_seg_keep(struct mmk__shm_seg *g, int fd)
{
    if (g->nspare < (int)(sizeof g->spare / sizeof g->spare[0]))
        g->spare[g->nspare++] = fd;
    else
        mmk__sys_close(fd); /* may drop the attach locks: nattch reads low */
}

struct mmk__shm_seg *mmk__shm_seg_removed(int id)
{
    for (struct mmk__shm_seg *g = segs; g; g = g->next)
        if (g->id == id && g->removed)
            return g;
    return NULL;
}

struct mmk__shm_seg *mmk__shm_seg_add(const struct stat *st, int id, key_t key, int rfd, int wfd,
                                      size_t maplen)
{
    struct mmk__shm_seg *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->dev = st->st_dev;
    g->ino = st->st_ino;
    g->id = id;
    g->key = key;
    g->rfd = rfd;
    g->wfd = wfd;
    g->maplen = maplen;
    g->next = segs;
    segs = g;
    return g;
}

void mmk__shm_seg_release(struct mmk__shm_seg *g)
{
    for (struct mmk__shm_seg **pp = &segs; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    if (g->rfd >= 0)
        mmk__sys_close(g->rfd);
    if (g->wfd >= 0)
        mmk__sys_close(g->wfd);
    for (int i = 0; i < g->nspare; i++)
        mmk__sys_close(g->spare[i]);
    free(g);
}

int mmk__shm_attach_add(struct mmk__shm_seg *g, void *addr, size_t len)
{
    struct attach *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    a->addr = addr;
    a->len = len;
    a->seg = g;
    /* SHM_REMAP may have replaced an earlier attach at the same address:
     * that attach is gone. */
    for (struct attach **pp = &attaches; *pp;) {
        struct attach *o = *pp;
        char *lo = o->addr, *hi = lo + o->len;
        if ((char *)addr < hi && (char *)addr + len > lo) {
            *pp = o->next;
            struct mmk__shm_seg *og = o->seg;
            mmk__shm_count_set(og, og->nattach, og->nattach - 1);
            og->nattach--;
            free(o);
            if (og->nattach == 0 && og != g)
                mmk__shm_seg_release(og);
            continue;
        }
        pp = &o->next;
    }
    a->next = attaches;
    attaches = a;
    return 0;
}

int mmk__shm_attach_remove(const void *addr, struct mmk__shm_seg **g, size_t *len)
{
    for (struct attach **pp = &attaches; *pp; pp = &(*pp)->next) {
        struct attach *a = *pp;
        if (a->addr == addr) {
            *pp = a->next;
            *g = a->seg;
            *len = a->len;
            free(a);
            return 0;
        }
    }
    return -EINVAL;
}

void mmk__shm_attach_each(struct mmk__shm_seg *g, void (*fn)(void *addr, size_t len))
{
    for (struct attach *a = attaches; a; a = a->next)
        if (a->seg == g)
            fn(a->addr, a->len);
}
