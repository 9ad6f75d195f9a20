/*
 * arena.c - growable file-backed arenas.
 *
 * An arena maps a file MAP_SHARED over a large reserved address range.  The
 * kernel raises SIGBUS for an access to a page past the end of the file; the
 * fault router hands that fault to arena_fault(), which extends the file and
 * asks for the access to be retried.  Nothing is ever remapped, so pointers
 * into the arena stay valid for its whole life.
 *
 * Growing without shrinking.  Several threads, and several processes that
 * opened the same file, may grow it at the same time.  ftruncate(2) cannot be
 * used naively: a thread that read size 4 MiB and truncates to 8 MiB after
 * another thread already grew the file to 16 MiB would cut 8..16 MiB off,
 * data included.  fallocate(2) mode 0 has exactly the semantics needed: it
 * sets the size to max(size, offset + len) atomically under the inode lock,
 * so concurrent growers can never shrink each other, with no lock in user
 * space at all.  It also allocates the blocks, so a full disk is reported by
 * the growth itself (ENOSPC in the handler, where we can name it) instead of
 * by a later store into a hole.  The cost is that the slack of the last chunk
 * occupies disk until close trims it; chunks are capped (256 MiB by default)
 * to bound that.
 *
 * Where fallocate is missing (EOPNOTSUPP), and for anonymous arenas (on a
 * memfd, fallocate would allocate RAM for the slack), growth falls back to
 * ftruncate, serialized so that it only ever grows: a spin lock in the arena
 * for the threads of this process, and a lock on the file for other
 * processes (an OFD lock on a file, whose other handles have open file
 * descriptions of their own; a classic record lock on a memfd, which only
 * fork() shares, through one open file description).  The spin lock is taken with every signal blocked and nothing
 * under it touches the arena, so the thread holding it can never be
 * re-entered by a fault handler that wants it: it cannot self-deadlock.
 *
 * What "used" means, and how close and reopen keep it: arena_used.c.
 *
 * Several processes.  Each handle holds a shared flock on the file.  Close
 * trims only if it can upgrade to an exclusive lock, that is, when no other
 * handle has the file open: a trim must never pull pages from under another
 * process.  MMK_ARENA_TRUNC follows the same rule (EBUSY otherwise), and
 * happens only once nothing else in mmk_arena_open can fail.  A handle never
 * trims a file longer than its reservation: it cannot see the bytes there.
 */
#include "arena.h"
#include "fault.h"
#include "report.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_FLAGS (MMK_ARENA_CREATE | MMK_ARENA_RDONLY | MMK_ARENA_EXCL | \
                     MMK_ARENA_TRUNC | MMK_ARENA_NOFOLLOW)
#define DEFAULT_ALIGN 16

/*
 * The last fault this thread handled without growing the file (see
 * arena_fault: a page that keeps faulting in a long-enough file).  Keyed by
 * the arena and its open generation (a handle freed and another opened at
 * the same address, with the same base, is a different key), the page and
 * the file size seen; forgotten whenever the handler grows the file.
 */
struct fault_memo {
    const struct mmk_arena *arena;
    unsigned long gen;
    uintptr_t page;
    size_t size;
    unsigned repeats;
};
static __thread struct fault_memo fault_memo __attribute__((tls_model("initial-exec")));

/* Faults of one page in a file already long enough, each after allocating
 * the page succeeded, before the page is declared unbackable (EIO). */
#define STUCK_LIMIT 8

static atomic_ulong open_generation;

static size_t page_up(size_t n, size_t page)
{
    return (n + page - 1) & ~(page - 1);
}

static void note_size(mmk_arena *a, size_t n)
{
    if (n > a->reserve)
        n = a->reserve;
    size_t cur = atomic_load(&a->size);
    while (cur < n && !atomic_compare_exchange_weak(&a->size, &cur, n))
        ;
}

/* The file's size now (an fstat), changing nothing: the accessors that take
 * a const handle use this one. */
int mmk__arena_fstat_size(const mmk_arena *a, size_t *out)
{
    struct stat st;
    int r = mmk__sys_fstat(a->fd, &st);
    if (r < 0)
        return r;
    *out = (size_t)st.st_size;
    return 0;
}

/* The same, also raising the size seen (a lower bound kept for alloc). */
int mmk__arena_file_size(mmk_arena *a, size_t *out)
{
    int r = mmk__arena_fstat_size(a, out);
    if (r == 0)
        note_size(a, *out);
    return r;
}

/* ---- growth (async-signal-safe) ----------------------------------------- */

/*
 * The growth spin lock and fork().  A thread of the parent may hold an
 * arena's lock when another thread forks; the child inherits the locked
 * word but not the thread, and an anonymous arena must stay growable in the
 * child (mmk_arena(3)).  So the lock word holds the fork generation of the
 * process that took it (plus one): each child of fork() counts one
 * generation more than its parent, and a word held by an earlier generation
 * was taken by a thread that does not exist here and is taken over.  (The
 * parent's record lock on the file is its own: the child's F_SETLKW still
 * waits for the parent's ftruncate.)
 */
static atomic_ulong fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void arena_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, arena_fork_child);
}

/* pre: every signal blocked (nothing under the lock can fault or re-enter). */
static void grow_lock(mmk_arena *a)
{
    unsigned long mine = atomic_load(&fork_generation) + 1;
    for (;;) {
        unsigned long cur = 0;
        if (atomic_compare_exchange_weak_explicit(&a->grow_lock, &cur, mine,
                                                  memory_order_acquire, memory_order_relaxed))
            return;
        if (cur != 0 && cur != mine &&
            atomic_compare_exchange_strong_explicit(&a->grow_lock, &cur, mine,
                                                    memory_order_acquire, memory_order_relaxed))
            return; /* held by a thread of an ancestor process: taken over */
        mmk__sys_yield();
    }
}

/*
 * ftruncate growth for filesystems without fallocate and for memfds.  Both
 * locks are held so that an fstat + ftruncate pair is never interleaved with
 * another one: every ftruncate grows.
 */
static int extend_by_truncate(mmk_arena *a, size_t to)
{
    sigset_t all, old;
    sigfillset(&all);
    mmk__sys_sigmask(SIG_BLOCK, &all, &old);
    grow_lock(a);
    /* A file's other handles have open file descriptions of their own: an
     * OFD lock excludes them.  A memfd is only ever shared by fork(), that
     * is through one open file description, which an OFD lock cannot split:
     * there a classic per-process record lock excludes the other processes
     * (the spin lock already excludes this one's threads). */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    int setlkw = a->anon ? F_SETLKW : F_OFD_SETLKW, setlk = a->anon ? F_SETLK : F_OFD_SETLK;
    int locked, r;
    do
        r = mmk__sys_fcntl(a->fd, setlkw, (long)(uintptr_t)&fl);
    while (r == -EINTR);
    locked = r == 0; /* no OFD locks (old NFS): serialize this process only */
    size_t cur;
    r = mmk__arena_file_size(a, &cur);
    if (r == 0 && cur < to)
        r = mmk__sys_ftruncate(a->fd, (off_t)to);
    if (locked) {
        fl.l_type = F_UNLCK;
        mmk__sys_fcntl(a->fd, setlk, (long)(uintptr_t)&fl);
    }
    atomic_store_explicit(&a->grow_lock, 0, memory_order_release);
    mmk__sys_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

/* Make the file at least `to` bytes long, knowing it was `cur` bytes. */
static int extend(mmk_arena *a, size_t cur, size_t to)
{
    int r;
    if (!a->anon && !atomic_load(&a->truncate_growth)) {
        r = mmk__sys_fallocate(a->fd, 0, (off_t)cur, (off_t)(to - cur));
        if (r != -EOPNOTSUPP && r != -ENOSYS)
            goto out;
        atomic_store(&a->truncate_growth, 1);
    }
    r = extend_by_truncate(a, to);
out:
    if (r == 0) {
        note_size(a, to);
        atomic_fetch_add(&a->grows, 1);
    }
    return r;
}

/* The size to grow to from cur when at least need bytes are wanted. */
static size_t growth_target(mmk_arena *a, size_t cur, size_t need)
{
    size_t lo = atomic_load(&a->min_chunk), hi = atomic_load(&a->max_chunk);
    size_t chunk = cur < lo ? lo : cur > hi ? hi : cur;
    size_t t = cur + chunk;
    if (t < need || t < cur)
        t = need;
    t = page_up(t, a->page);
    return t > a->reserve ? a->reserve : t;
}

/*
 * Make the file at least need bytes long, growing by a whole chunk if
 * chunked.  If the chunk cannot be had (RLIMIT_FSIZE, a nearly full disk),
 * try exactly need before giving up.  0 or -errno.
 */
static int grow(mmk_arena *a, size_t need, int chunked)
{
    size_t cur;
    int r = mmk__arena_file_size(a, &cur);
    if (r < 0 || cur >= need)
        return r;
    size_t want = chunked ? growth_target(a, cur, need) : need;
    r = extend(a, cur, want);
    if (r < 0 && want > need) {
        if (mmk__arena_file_size(a, &cur) == 0 && cur >= need)
            return 0;
        r = extend(a, cur, need);
    }
    return r;
}

/* ---- the fatal line (async-signal-safe) --------------------------------- */

static const char *errno_name(int e)
{
    switch (e) {
    case ENOSPC: return "ENOSPC";
    case EFBIG:  return "EFBIG";
    case EDQUOT: return "EDQUOT";
    case EIO:    return "EIO";
    case ENOMEM: return "ENOMEM";
    case EROFS:  return "EROFS";
    case EBADF:  return "EBADF";
    case EPERM:  return "EPERM";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ETXTBSY: return "ETXTBSY";
    default:     return "errno";
    }
}

/*
 * A store the file cannot back: say so in one line on stderr, put SIGBUS
 * back to its default action and let the access run again, so that the
 * process dies of SIGBUS (core dump included) whatever handler it had.
 */
static int die_unbacked(const mmk_fault *f, mmk_arena *a, size_t off, int err)
{
    struct mmk__line l = MMK__LINE_INIT;
    int e = err < 0 ? -err : err;
    mmk__line_str(&l, "mmkit: arena ");
    mmk__line_str(&l, a->name);
    mmk__line_str(&l, ": cannot extend the file to back offset ");
    mmk__line_dec(&l, (long long)off);
    mmk__line_str(&l, ": ");
    mmk__line_str(&l, errno_name(e));
    mmk__line_str(&l, " (");
    mmk__line_dec(&l, e);
    mmk__line_str(&l, ", ");
    mmk__line_str(&l, mmk_strerror(e));
    mmk__line_str(&l, "); a plain store cannot fail, ending the process");
    mmk__report_fault(&l, f->ucontext, MMK__REPORT_NOW);
    mmk__sys_sigdefault(SIGBUS);
    return MMK_FAULT_RETRY;
}

static int arena_fault(const mmk_fault *f, void *ctx)
{
    mmk_arena *a = ctx;
    if (f->signo != SIGBUS)
        return MMK_FAULT_PASS; /* e.g. a store into a read-only arena */
    if (a->flags & MMK_ARENA_RDONLY)
        return MMK_FAULT_PASS; /* a read past the end of a read-only file */
    uintptr_t page = (uintptr_t)f->addr & ~(uintptr_t)(a->page - 1);
    size_t off = page - (uintptr_t)a->base;
    size_t need = off + a->page;
    atomic_fetch_add_explicit(&a->faults, 1, memory_order_relaxed);

    size_t cur;
    int r = mmk__arena_file_size(a, &cur);
    if (r < 0)
        return die_unbacked(f, a, off, r);
    struct fault_memo *m = &fault_memo;
    if (cur >= need) {
        /*
         * Long enough already.  Normally another thread or process grew the
         * file after our access: retry.  Only if this very page faults again
         * with nothing changed (same arena, same open, same file size) could
         * the filesystem not back it (a hole on a full disk, an I/O error):
         * allocating the page explicitly says why.  If that succeeds and the
         * page still faults STUCK_LIMIT times, give up with EIO rather than
         * loop forever.
         */
        if (m->arena != a || m->gen != a->gen || m->page != page || m->size != cur) {
            m->arena = a;
            m->gen = a->gen;
            m->page = page;
            m->size = cur;
            m->repeats = 0;
            return MMK_FAULT_RETRY;
        }
        r = mmk__sys_fallocate(a->fd, 0, (off_t)off, (off_t)a->page);
        if (r < 0 && r != -EOPNOTSUPP && r != -ENOSYS)
            return die_unbacked(f, a, off, r);
        if (++m->repeats < STUCK_LIMIT)
            return MMK_FAULT_RETRY;
        return die_unbacked(f, a, off, -EIO);
    }
    m->arena = NULL; /* this fault grows the file: forget the last one */
    r = extend(a, cur, growth_target(a, cur, need));
    if (r < 0 && (r = grow(a, need, 0)) < 0)
        return die_unbacked(f, a, off, r);
    return MMK_FAULT_RETRY;
}

/* ---- public calls ----------------------------------------------------------- */

/*
 * Growing past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills.
 * Ignored, the call fails with EFBIG instead, which we can report.  A
 * handler the program installed is left alone (the call still fails with
 * EFBIG after it returns).  Returns 1 if it changed the action.
 */
static int ignore_sigxfsz(void)
{
    struct sigaction old, ign;
    if (mmk__sys_sigaction(SIGXFSZ, NULL, &old) < 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
        return 0;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    return mmk__sys_sigaction(SIGXFSZ, &ign, NULL) == 0;
}

/* Undo ignore_sigxfsz, unless someone changed the action since. */
static void restore_sigxfsz(void)
{
    struct sigaction old;
    if (mmk__sys_sigaction(SIGXFSZ, NULL, &old) < 0 || old.sa_handler != SIG_IGN ||
        (old.sa_flags & SA_SIGINFO))
        return;
    mmk__sys_sigdefault(SIGXFSZ);
}

/* What a failing mmk_arena_open has done so far and must undo. */
struct opening {
    const char *created;    /* the path of a file this call created */
    int sigxfsz;            /* ignore_sigxfsz changed SIGXFSZ */
};

static mmk_arena *fail(mmk_arena *a, const struct opening *o, int err)
{
    if (a) {
        if (a->area)
            mmk_area_unregister(a->area);
        if (a->base)
            mmk__sys_munmap(a->base, a->reserve);
        /* A file this call created goes again, unless another handle has
         * opened it meanwhile (it may be writing into it). */
        if (o && o->created && mmk__sys_flock(a->fd, LOCK_EX | LOCK_NB) != -EWOULDBLOCK)
            mmk__sys_unlink(o->created);
        if (a->fd >= 0)
            mmk__sys_close(a->fd);
        free(a);
    }
    if (o && o->sigxfsz)
        restore_sigxfsz();
    errno = err < 0 ? -err : err;
    return NULL;
}

/*
 * open(2) the arena's file without O_TRUNC (a failed mmk_arena_open must
 * not have changed it), telling whether this call created it: an existing
 * file is opened without O_CREAT, a missing one created with O_EXCL.
 */
static int open_file(const char *path, unsigned flags, int writable, int *created)
{
    int of = (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK;
    of |= flags & MMK_ARENA_NOFOLLOW ? O_NOFOLLOW : 0;
    *created = 0;
    if (!(flags & MMK_ARENA_CREATE))
        return mmk__sys_open(path, of, 0666);
    if (flags & MMK_ARENA_EXCL) {
        int fd = mmk__sys_open(path, of | O_CREAT | O_EXCL, 0666);
        *created = fd >= 0;
        return fd;
    }
    for (int tries = 0; tries < 4; tries++) {
        int fd = mmk__sys_open(path, of, 0666);
        if (fd != -ENOENT)
            return fd;
        fd = mmk__sys_open(path, of | O_CREAT | O_EXCL, 0666);
        if (fd != -EEXIST) {
            *created = fd >= 0;
            return fd;
        }
        /* Created by someone else meanwhile, or a dangling symbolic link
         * (O_EXCL does not follow it): look again. */
    }
    return mmk__sys_open(path, of | O_CREAT, 0666); /* the dangling link's target */
}

mmk_arena *mmk_arena_open(const char *path, size_t reserve, unsigned flags)
{
    size_t page = mmk__page_size();
    if ((flags & ~(unsigned)ARENA_FLAGS) || reserve == 0)
        return fail(NULL, NULL, EINVAL);
    if (!path && (flags & MMK_ARENA_RDONLY))
        return fail(NULL, NULL, EINVAL); /* an empty anonymous file, read-only */
    if ((flags & MMK_ARENA_EXCL) && !(flags & MMK_ARENA_CREATE))
        return fail(NULL, NULL, EINVAL);
    if ((flags & MMK_ARENA_TRUNC) && (flags & MMK_ARENA_RDONLY))
        return fail(NULL, NULL, EINVAL);
    if (reserve > (size_t)PTRDIFF_MAX - page || reserve > (size_t)INT64_MAX - page)
        return fail(NULL, NULL, ENOMEM); /* more than the address space holds */
    reserve = page_up(reserve, page);

    pthread_once(&atfork_once, register_atfork);
    mmk_arena *a = calloc(1, sizeof *a);
    if (!a)
        return fail(NULL, NULL, ENOMEM);
    struct opening o = { .created = NULL, .sigxfsz = 0 };
    a->fd = -1;
    a->flags = flags;
    a->reserve = reserve;
    a->page = page;
    a->anon = path == NULL;
    a->gen = atomic_fetch_add(&open_generation, 1) + 1;
    atomic_init(&a->min_chunk, DEFAULT_MIN_CHUNK);
    atomic_init(&a->max_chunk, DEFAULT_MAX_CHUNK);
    atomic_init(&a->grow_lock, 0);
    int writable = !(flags & MMK_ARENA_RDONLY);
    int trunc = (flags & MMK_ARENA_TRUNC) != 0;

    /* The address space first: the likeliest failure (ENOMEM) must come
     * before the file is touched. */
    void *base;
    int r = mmk__sys_mmap(&base, NULL, reserve, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r < 0)
        return fail(a, &o, r);
    a->base = base;

    if (path) {
        size_t len = strlen(path);
        if (len >= NAME_LEN) {
            memcpy(a->name, "...", 3);
            memcpy(a->name + 3, path + len - (NAME_LEN - 4), NAME_LEN - 4);
        } else {
            memcpy(a->name, path, len);
        }
        int created;
        r = open_file(path, flags, writable, &created);
        if (created)
            o.created = path;
    } else {
        strcpy(a->name, "(anonymous)");
        r = mmk__sys_memfd("mmkit-arena", 0);
    }
    if (r < 0)
        return fail(a, &o, r);
    a->fd = r;

    struct stat st;
    if ((r = mmk__sys_fstat(a->fd, &st)) < 0)
        return fail(a, &o, r);
    if (S_ISDIR(st.st_mode))
        return fail(a, &o, EISDIR);
    if (!S_ISREG(st.st_mode))
        return fail(a, &o, EINVAL);
    if ((size_t)st.st_size > reserve && !trunc)
        return fail(a, &o, EFBIG); /* the file is larger than the reservation */
    if (path) {
        /* A shared flock per handle, see mmk_arena_close.  TRUNC empties the
         * file, so it needs the exclusive lock close needs to trim: it must
         * not pull pages from under another handle. */
        r = mmk__sys_flock(a->fd, trunc ? LOCK_EX | LOCK_NB : LOCK_SH);
        if (r == -EWOULDBLOCK)
            return fail(a, &o, EBUSY);
        /* other errors (no flock on this filesystem): best effort */
    }

    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    r = mmk__sys_mmap(&base, a->base, reserve, prot, MAP_SHARED | MAP_NORESERVE | MAP_FIXED,
                      a->fd, 0);
    if (r < 0)
        return fail(a, &o, r);
    size_t size = (size_t)st.st_size;
    atomic_init(&a->size, size > reserve ? reserve : size);
    if (path && !trunc)
        atomic_init(&a->bump, mmk__arena_recover_used(a, size));

    a->area = mmk_area_register(a->base, reserve, arena_fault, a);
    if (!a->area)
        return fail(a, &o, errno);
    if (writable)
        o.sigxfsz = ignore_sigxfsz();

    if (path && writable) {
        if (trunc) {
            if (size > 0 && (r = mmk__sys_ftruncate(a->fd, 0)) < 0)
                return fail(a, &o, r);
            atomic_store(&a->size, 0);
            mmk__arena_record_used(a, 0, 0);
            mmk__sys_flock(a->fd, LOCK_SH);
        } else {
            /*
             * A file that ends inside a page (close trims to the byte) gets
             * the rest of that page: a store past the end of the file but in
             * its last page does not fault, and would never reach the file.
             */
            if (size % page && (r = extend(a, size, page_up(size, page))) < 0)
                return fail(a, &o, r);
            mmk__arena_record_used(a, atomic_load(&a->bump), 1);
        }
    }
    return a;
}

int mmk_arena_close(mmk_arena *a)
{
    if (!a)
        return -EINVAL;
    /* Unregistering from inside a fault handler would wait for itself:
     * refuse before anything is changed, the handle stays usable. */
    if (mmk__fault_in_handler())
        return -EDEADLK;
    int r = 0;
    if (!a->anon && !(a->flags & MMK_ARENA_RDONLY)) {
        /* Trim only when no other handle has the file open, that is when the
         * exclusive lock was granted: EWOULDBLOCK says another handle holds
         * it, and any other error (no flock here) says nothing, so the file
         * is left as it is.  The used size is measured after that is known,
         * so that no other handle can write past it before the trim. */
        int lk = mmk__sys_flock(a->fd, LOCK_EX | LOCK_NB), beyond;
        size_t size, used = mmk__arena_record_used(a, mmk__arena_used_in_view(a, &beyond), 1);
        /* A file longer than our reservation holds bytes we cannot see: it
         * is never trimmed (the next handle that sees it all will). */
        if (lk == 0 && !beyond && mmk__arena_file_size(a, &size) == 0 && size > used)
            r = mmk__sys_ftruncate(a->fd, (off_t)used);
        int s = mmk__sys_fsync(a->fd);
        if (r == 0)
            r = s;
    }
    /* Cannot fail here: a valid area, outside any handler (fault.c keeps
     * what unregistering needs ready).  After it no handler of ours runs. */
    mmk_area_unregister(a->area);
    mmk__sys_munmap(a->base, a->reserve);
    mmk__sys_close(a->fd); /* also drops the flock */
    free(a);
    return r;
}

void *mmk_arena_base(const mmk_arena *a)
{
    return a ? a->base : NULL;
}

size_t mmk_arena_size(const mmk_arena *a)
{
    if (!a)
        return 0;
    size_t n;
    if (mmk__arena_fstat_size(a, &n) < 0)
        n = atomic_load(&a->size);
    return n > a->reserve ? a->reserve : n;
}

size_t mmk_arena_used(const mmk_arena *a)
{
    return a ? mmk__arena_compute_used(a) : 0;
}

int mmk_arena_reserve(mmk_arena *a, size_t len)
{
    if (!a)
        return -EINVAL;
    if (a->flags & MMK_ARENA_RDONLY)
        return -EBADF;
    if (len > a->reserve)
        return -ENOMEM;
    if (len == 0)
        return 0;
    return grow(a, page_up(len, a->page), 0);
}

void *mmk_arena_alloc(mmk_arena *a, size_t len, size_t align)
{
    if (!a || len == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (align == 0)
        align = DEFAULT_ALIGN;
    if (align & (align - 1)) {
        errno = EINVAL;
        return NULL;
    }
    if (a->flags & MMK_ARENA_RDONLY) {
        errno = EBADF;
        return NULL;
    }
    uintptr_t base = (uintptr_t)a->base;
    size_t old = atomic_load(&a->bump);
    for (;;) {
        uintptr_t at = base + old;
        uintptr_t aligned = (at + align - 1) & ~(uintptr_t)(align - 1);
        if (aligned < at) {
            errno = ENOMEM;
            return NULL;
        }
        size_t start = aligned - base;
        if (start > a->reserve || len > a->reserve - start) {
            errno = ENOMEM; /* the reservation is full */
            return NULL;
        }
        size_t end = start + len;
        if (atomic_load(&a->size) < end) {
            int r = grow(a, page_up(end, a->page), 1);
            if (r < 0) {
                errno = -r;
                return NULL;
            }
        }
        if (atomic_compare_exchange_weak(&a->bump, &old, end))
            return (void *)aligned;
    }
}

int mmk_arena_sync(mmk_arena *a)
{
    if (!a)
        return -EINVAL;
    if (a->anon || (a->flags & MMK_ARENA_RDONLY))
        return 0;
    mmk__arena_record_used(a, atomic_load(&a->bump), 1);
    /* fsync writes back the pages dirtied through the mapping too, and makes
     * the xattr durable with them. */
    return mmk__sys_fsync(a->fd);
}

int mmk_arena_set_growth(mmk_arena *a, size_t min_chunk, size_t max_chunk)
{
    if (!a)
        return -EINVAL;
    if (min_chunk == 0)
        min_chunk = DEFAULT_MIN_CHUNK;
    if (max_chunk == 0)
        max_chunk = min_chunk > DEFAULT_MAX_CHUNK ? min_chunk : DEFAULT_MAX_CHUNK;
    if (min_chunk > max_chunk)
        return -EINVAL;
    /* A chunk larger than the reservation grows the file to all of it: clamp
     * before rounding up, which would wrap for sizes near SIZE_MAX. */
    if (min_chunk > a->reserve)
        min_chunk = a->reserve;
    if (max_chunk > a->reserve)
        max_chunk = a->reserve;
    atomic_store(&a->min_chunk, page_up(min_chunk, a->page));
    atomic_store(&a->max_chunk, page_up(max_chunk, a->page));
    return 0;
}

int mmk_arena_stats(const mmk_arena *a, struct mmk_arena_stats *st)
{
    if (!a || !st)
        return -EINVAL;
    st->reserve = a->reserve;
    st->size = mmk_arena_size(a);
    st->used = mmk_arena_used(a);
    st->faults = atomic_load(&a->faults);
    st->grows = atomic_load(&a->grows);
    return 0;
}
