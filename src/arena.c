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
 * for the threads of this process, and an OFD lock on the file for other
 * processes.  The spin lock is taken with every signal blocked and nothing
 * under it touches the arena, so the thread holding it can never be
 * re-entered by a fault handler that wants it: it cannot self-deadlock.
 *
 * What "used" means.  The file must hold exactly the program's bytes, but a
 * page inside an already grown chunk can be written without any fault, so
 * faults say nothing about how much was written.  The used size is
 *
 *     max(allocation pointer, offset of the last non-zero byte + 1)
 *
 * where the allocation pointer starts at the used size found at open and
 * advances with mmk_arena_alloc.  The last non-zero byte is found by scanning
 * backwards from the end of the file, skipping holes with SEEK_DATA and
 * SEEK_HOLE (the growth slack of a fallocated file reads as holes on ext4
 * and xfs until written).  Zero bytes stored past both are indistinguishable
 * from slack and are trimmed.
 *
 * Reopen.  Close trims the file to the used size and records that size in
 * the extended attribute user.mmkit.used; sync records the allocation
 * pointer there too.  Open takes max(recorded size, last non-zero byte), so
 * trailing zeros that were allocated survive a close, and after a crash the
 * slack the dead process left behind is recognised.  A file without the
 * attribute (not written by mmkit, or on a filesystem without user xattrs)
 * counts as used up to its end.
 *
 * Several processes.  Each handle holds a shared flock on the file.  Close
 * trims only if it can upgrade to an exclusive lock, that is, when no other
 * handle has the file open: a trim must never pull pages from under another
 * process.
 */
#include "mmkit.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
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
#define XATTR_USED "user.mmkit.used"
#define DEFAULT_MIN_CHUNK ((size_t)1 << 20)
#define DEFAULT_MAX_CHUNK ((size_t)256 << 20)
#define DEFAULT_ALIGN 16
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
    atomic_flag grow_lock;
    atomic_size_t faults, grows;
    char name[NAME_LEN];
};

/* The page this thread last faulted on and how often in a row (see
 * arena_fault: a page that keeps faulting in a long-enough file). */
static __thread uintptr_t fault_page __attribute__((tls_model("initial-exec")));
static __thread unsigned fault_repeats __attribute__((tls_model("initial-exec")));

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

static int file_size(mmk_arena *a, size_t *out)
{
    struct stat st;
    int r = mmk__sys_fstat(a->fd, &st);
    if (r < 0)
        return r;
    *out = (size_t)st.st_size;
    note_size(a, *out);
    return 0;
}

/* ---- growth (async-signal-safe) ----------------------------------------- */

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
    while (atomic_flag_test_and_set_explicit(&a->grow_lock, memory_order_acquire))
        sched_yield();
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    int locked = 0, r;
    if (!a->anon) {
        do
            r = mmk__sys_fcntl(a->fd, F_OFD_SETLKW, (long)(uintptr_t)&fl);
        while (r == -EINTR);
        locked = r == 0; /* no OFD locks (old NFS): serialize this process only */
    }
    size_t cur;
    r = file_size(a, &cur);
    if (r == 0 && cur < to)
        r = mmk__sys_ftruncate(a->fd, (off_t)to);
    if (locked) {
        fl.l_type = F_UNLCK;
        mmk__sys_fcntl(a->fd, F_OFD_SETLK, (long)(uintptr_t)&fl);
    }
    atomic_flag_clear_explicit(&a->grow_lock, memory_order_release);
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
    int r = file_size(a, &cur);
    if (r < 0 || cur >= need)
        return r;
    size_t want = chunked ? growth_target(a, cur, need) : need;
    r = extend(a, cur, want);
    if (r < 0 && want > need) {
        if (file_size(a, &cur) == 0 && cur >= need)
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

struct linebuf {
    char s[512];
    size_t n;
};

static void put_str(struct linebuf *b, const char *s)
{
    while (*s && b->n < sizeof b->s - 1)
        b->s[b->n++] = *s++;
}

static void put_num(struct linebuf *b, unsigned long long v)
{
    char d[24];
    int i = 0;
    do
        d[i++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (i > 0 && b->n < sizeof b->s - 1)
        b->s[b->n++] = d[--i];
}

/*
 * A store the file cannot back: say so in one line on stderr, put SIGBUS
 * back to its default action and let the access run again, so that the
 * process dies of SIGBUS (core dump included) whatever handler it had.
 */
static int die_unbacked(mmk_arena *a, size_t off, int err)
{
    struct linebuf b = { .n = 0 };
    int e = err < 0 ? -err : err;
    put_str(&b, "mmkit: arena ");
    put_str(&b, a->name);
    put_str(&b, ": cannot extend the file to back offset ");
    put_num(&b, off);
    put_str(&b, ": ");
    put_str(&b, errno_name(e));
    put_str(&b, " (");
    put_num(&b, (unsigned long long)e);
    put_str(&b, ", ");
    put_str(&b, mmk_strerror(e));
    put_str(&b, "); a plain store cannot fail, ending the process\n");
    mmk__sys_write_all(2, b.s, b.n);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    mmk__sys_sigaction(SIGBUS, &dfl, NULL);
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

    if (page == fault_page) {
        fault_repeats++;
    } else {
        fault_page = page;
        fault_repeats = 0;
    }
    size_t cur;
    int r = file_size(a, &cur);
    if (r < 0)
        return die_unbacked(a, off, r);
    if (cur >= need) {
        /*
         * Long enough already.  The first time, another thread or process
         * grew the file after our access: retry.  If the same page faults
         * again, the filesystem could not back it (a hole on a full disk, an
         * I/O error): allocating the page explicitly tells us why.
         */
        if (fault_repeats == 0)
            return MMK_FAULT_RETRY;
        if (fault_repeats == 1) {
            r = mmk__sys_fallocate(a->fd, 0, (off_t)off, (off_t)a->page);
            if (r == 0 || r == -EOPNOTSUPP)
                return MMK_FAULT_RETRY;
            return die_unbacked(a, off, r);
        }
        return die_unbacked(a, off, -EIO);
    }
    r = extend(a, cur, growth_target(a, cur, need));
    if (r < 0 && (r = grow(a, need, 0)) < 0)
        return die_unbacked(a, off, r);
    return MMK_FAULT_RETRY;
}

/* ---- used size ------------------------------------------------------------ */

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
static size_t last_nonzero(mmk_arena *a, size_t from, size_t to)
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

static size_t compute_used(mmk_arena *a)
{
    size_t bump = atomic_load(&a->bump), size;
    if (a->anon || file_size(a, &size) < 0)
        return bump;
    if (size > a->reserve)
        size = a->reserve;
    return size > bump ? last_nonzero(a, bump, size) : bump;
}

static void record_used(mmk_arena *a, size_t used)
{
    char buf[24];
    int n = 0;
    char d[24];
    int i = 0;
    do
        d[i++] = (char)('0' + used % 10);
    while ((used /= 10) != 0);
    while (i > 0)
        buf[n++] = d[--i];
    mmk__sys_fsetxattr(a->fd, XATTR_USED, buf, (size_t)n, 0); /* best effort */
}

/* The used size of a file being opened (see the comment at the top). */
static size_t recover_used(mmk_arena *a, size_t size)
{
    char buf[24];
    int n = mmk__sys_fgetxattr(a->fd, XATTR_USED, buf, sizeof buf - 1);
    if (n <= 0)
        return size;
    size_t rec = 0;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9' || rec > (SIZE_MAX - 9) / 10)
            return size;
        rec = rec * 10 + (size_t)(buf[i] - '0');
    }
    if (rec >= size)
        return size;
    return last_nonzero(a, rec, size);
}

/* ---- public calls ----------------------------------------------------------- */

static void ignore_sigxfsz(void)
{
    /* Growing past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills.
     * Ignored, the call fails with EFBIG instead, which we can report.  A
     * handler the program installed is left alone (the call still fails
     * with EFBIG after it returns). */
    struct sigaction old, ign;
    if (mmk__sys_sigaction(SIGXFSZ, NULL, &old) < 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
        return;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    mmk__sys_sigaction(SIGXFSZ, &ign, NULL);
}

static mmk_arena *fail(mmk_arena *a, int err)
{
    if (a) {
        if (a->base)
            mmk__sys_munmap(a->base, a->reserve);
        if (a->fd >= 0)
            mmk__sys_close(a->fd);
        free(a);
    }
    errno = err < 0 ? -err : err;
    return NULL;
}

mmk_arena *mmk_arena_open(const char *path, size_t reserve, unsigned flags)
{
    size_t page = mmk__page_size();
    if ((flags & ~(unsigned)ARENA_FLAGS) || reserve == 0)
        return fail(NULL, EINVAL);
    if (!path && (flags & MMK_ARENA_RDONLY))
        return fail(NULL, EINVAL); /* an empty anonymous file, read-only */
    if ((flags & MMK_ARENA_EXCL) && !(flags & MMK_ARENA_CREATE))
        return fail(NULL, EINVAL);
    if ((flags & MMK_ARENA_TRUNC) && (flags & MMK_ARENA_RDONLY))
        return fail(NULL, EINVAL);
    if (reserve > (size_t)PTRDIFF_MAX - page || reserve > (size_t)INT64_MAX - page)
        return fail(NULL, ENOMEM); /* more than the address space holds */
    reserve = page_up(reserve, page);

    mmk_arena *a = calloc(1, sizeof *a);
    if (!a)
        return fail(NULL, ENOMEM);
    a->fd = -1;
    a->flags = flags;
    a->reserve = reserve;
    a->page = page;
    a->anon = path == NULL;
    atomic_init(&a->min_chunk, DEFAULT_MIN_CHUNK);
    atomic_init(&a->max_chunk, DEFAULT_MAX_CHUNK);
    atomic_flag_clear(&a->grow_lock);
    int writable = !(flags & MMK_ARENA_RDONLY);

    int r;
    if (path) {
        size_t len = strlen(path);
        if (len >= NAME_LEN) {
            memcpy(a->name, "...", 3);
            memcpy(a->name + 3, path + len - (NAME_LEN - 4), NAME_LEN - 4);
        } else {
            memcpy(a->name, path, len);
        }
        int of = (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK;
        of |= flags & MMK_ARENA_CREATE ? O_CREAT : 0;
        of |= flags & MMK_ARENA_EXCL ? O_EXCL : 0;
        of |= flags & MMK_ARENA_TRUNC ? O_TRUNC : 0;
        of |= flags & MMK_ARENA_NOFOLLOW ? O_NOFOLLOW : 0;
        r = mmk__sys_open(path, of, 0666);
    } else {
        strcpy(a->name, "(anonymous)");
        r = mmk__sys_memfd("mmkit-arena", 0);
    }
    if (r < 0)
        return fail(a, r);
    a->fd = r;

    struct stat st;
    if ((r = mmk__sys_fstat(a->fd, &st)) < 0)
        return fail(a, r);
    if (S_ISDIR(st.st_mode))
        return fail(a, EISDIR);
    if (!S_ISREG(st.st_mode))
        return fail(a, EINVAL);
    if ((size_t)st.st_size > reserve)
        return fail(a, EFBIG); /* the file is larger than the reservation */
    if (path)
        mmk__sys_flock(a->fd, LOCK_SH); /* see mmk_arena_close; best effort */

    void *base;
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    r = mmk__sys_mmap(&base, NULL, reserve, prot, MAP_SHARED | MAP_NORESERVE, a->fd, 0);
    if (r < 0)
        return fail(a, r);
    a->base = base;
    atomic_init(&a->size, (size_t)st.st_size);
    atomic_init(&a->bump, path ? recover_used(a, (size_t)st.st_size) : 0);

    if (writable)
        ignore_sigxfsz();
    a->area = mmk_area_register(a->base, reserve, arena_fault, a);
    if (!a->area)
        return fail(a, errno);
    if (path && writable)
        record_used(a, atomic_load(&a->bump));
    return a;
}

int mmk_arena_close(mmk_arena *a)
{
    if (!a)
        return -EINVAL;
    int r = 0;
    if (!a->anon && !(a->flags & MMK_ARENA_RDONLY)) {
        size_t used = compute_used(a), size;
        /* Trim only when no other handle has the file open. */
        int lk = mmk__sys_flock(a->fd, LOCK_EX | LOCK_NB);
        if (lk != -EWOULDBLOCK && file_size(a, &size) == 0 && size > used)
            r = mmk__sys_ftruncate(a->fd, (off_t)used);
        record_used(a, used);
        int s = mmk__sys_fsync(a->fd);
        if (r == 0)
            r = s;
    }
    int u = mmk_area_unregister(a->area);
    if (r == 0)
        r = u;
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
    if (file_size((mmk_arena *)a, &n) < 0)
        n = atomic_load(&a->size);
    return n > a->reserve ? a->reserve : n;
}

size_t mmk_arena_used(const mmk_arena *a)
{
    return a ? compute_used((mmk_arena *)a) : 0;
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
    record_used(a, atomic_load(&a->bump));
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
