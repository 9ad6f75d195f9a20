/*
 * mmkit.h - the MMU as an application tool.
 *
 * One public header for the whole library.  Conventions that hold for every
 * call below unless its comment says otherwise:
 *
 *  - Calls return 0 (or a non-negative value) on success and a negative errno
 *    on failure.  Constructors return NULL and set errno.  mmk_strerror()
 *    names every code, including mmkit's own MMK_E* codes.
 *  - Handles are opaque.  Create -> use -> destroy/close.  A handle may be
 *    used from several threads only where the call says so.
 *  - Flags are unsigned bitmasks.  Unknown bits are rejected with -EINVAL.
 *  - The library never prints and never exits, with one documented exception:
 *    a fault that mmkit cannot resolve and that the program asked to be fatal
 *    (a stray write into a mirror, an arena store the disk cannot hold) writes
 *    one line to stderr from the signal handler and ends the process.
 *  - Linux only.  Signal-handler paths are async-signal-safe.
 */
#ifndef MMKIT_H
#define MMKIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MMK_API __attribute__((visibility("default")))
#else
#define MMK_API
#endif

#define MMK_VERSION_MAJOR 0
#define MMK_VERSION_MINOR 1
#define MMK_VERSION_PATCH 0
#define MMK_VERSION_STRING "0.1.0"

/* The version of the library actually linked, as "MAJOR.MINOR.PATCH". */
MMK_API const char *mmk_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * mmkit's own error codes, for conditions the kernel has no name for.  They
 * are returned negated, like errno values, and lie above every errno value.
 */
enum {
    MMK_EBASE   = 4200,
    MMK_EBUDGET = 4201, /* the mapping budget (vm.max_map_count share) is spent */
    MMK_ESIZE   = 4202, /* two objects whose sizes must match do not */
    MMK_ESTATE  = 4203, /* the object is in a state where the call cannot run */
    MMK_ECORRUPT= 4204, /* on-disk or shared metadata failed a consistency check */
    MMK_ELAST   = 4205
};

/*
 * A one-line description of err, which may be negative (as returned) or
 * positive.  Never NULL; unknown codes give "unknown error".  The string is
 * static and thread-safe.
 */
MMK_API const char *mmk_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Fault router                                                              */
/* ------------------------------------------------------------------------ */

/*
 * One process-wide SIGSEGV/SIGBUS handler that dispatches a fault to the
 * handler of the registered area holding the faulting address.
 *
 * Installing: the router installs itself (sigaction, SA_SIGINFO | SA_ONSTACK |
 * SA_NODEFER | SA_RESTART) the first time an area is registered, remembering
 * whatever handler each signal had before.  mmk_fault_install() does the same
 * explicitly.  If another library later replaces mmkit's handler, mmkit only
 * sees faults that library chains to it.
 *
 * Dispatch: a fault inside an area calls its fn on the faulting thread, inside
 * the signal handler.  fn returns MMK_FAULT_RETRY after fixing the cause (for
 * example mprotect or mmap over the page): the faulting instruction runs again.
 * It returns MMK_FAULT_PASS to decline: the fault goes to the previous handler
 * exactly as if mmkit were not there - an SA_SIGINFO or plain handler is
 * called, with its sa_mask (and the signal, unless SA_NODEFER) blocked, and
 * only once if it had SA_RESETHAND; SIG_DFL (or SIG_IGN for a real fault)
 * makes the process die of the original signal, core dump included.  A fault
 * outside every area is passed the same way.
 *
 * fn must be async-signal-safe: no malloc, no stdio, no locks that the
 * faulting thread might hold.  It must return (siglongjmp out of fn is not
 * supported: the router would stay "inside a handler" on that thread and
 * mmk_area_unregister would wait for it forever).  A fault raised while fn
 * runs, on the same thread, is never dispatched to an area again: it goes
 * straight to the previous handler, so a buggy handler cannot loop.
 *
 * Lookup is lock-free (a two-level sorted table, published atomically, two
 * binary searches): O(log areas).  Register and unregister are thread-safe
 * and may run while other threads fault.
 *
 * fork(): the child keeps the areas and may use every call, even when other
 * threads of the parent were inside handlers or changing the table.
 *
 * Stack overflow: a handler can only run on a thread whose stack has
 * overflowed if that thread has an alternate signal stack.  Call
 * mmk_fault_altstack() once on each such thread (the main thread included);
 * it is harmless where a stack is already installed.
 */
typedef struct mmk_fault {
    void *addr;   /* faulting address (si_addr) */
    int   signo;  /* SIGSEGV or SIGBUS */
    int   code;   /* si_code: SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR, ... */
    int   write;  /* 1 write, 0 read, -1 unknown (not x86-64 or aarch64) */
    void *ucontext; /* the ucontext_t the kernel passed, for experts */
} mmk_fault;

enum { MMK_FAULT_PASS = 0, MMK_FAULT_RETRY = 1 };

typedef int (*mmk_fault_fn)(const mmk_fault *f, void *ctx);
typedef struct mmk_area mmk_area;

/*
 * Route faults in [start, start + len) to fn(fault, ctx).
 * Errors (NULL + errno, nothing registered): EINVAL for len 0 or a NULL fn,
 * EOVERFLOW if the range wraps around the address space, EEXIST if it
 * overlaps an area already registered, EDEADLK when called from inside a
 * fault handler, ENOMEM.  Each call copies one chunk of the area table and
 * its index, then waits until no handler can still read the old ones.
 */
MMK_API mmk_area *mmk_area_register(void *start, size_t len, mmk_fault_fn fn, void *ctx);

/*
 * Remove an area.  Returns only when no handler of that area is still running
 * on any thread, so ctx may be freed afterwards.  Cannot fail for a valid
 * handle outside a handler (what it needs is set aside at register time).
 * -EINVAL for NULL or a handle that is not registered: handles are never
 * reused, so a stale one (already unregistered, even if another area now
 * sits at the same address) is refused; -EDEADLK when called from inside a
 * fault handler (that would wait for itself; nothing changes).
 */
MMK_API int mmk_area_unregister(mmk_area *area);

/* Install the process-wide handler now (idempotent).  0 or -errno. */
MMK_API int mmk_fault_install(void);

/*
 * Give the calling thread an alternate signal stack of at least size bytes
 * (0: a default of 64 KiB), with a guard page below it, unless it already
 * has one (then 0 and nothing changes).  mmk_fault_altstack_free() removes
 * and frees a stack mmkit installed on this thread; call it before the thread
 * exits to avoid leaking the mapping.
 */
MMK_API int mmk_fault_altstack(size_t size);
MMK_API int mmk_fault_altstack_free(void);

/* Number of areas registered now (a lock-free read, for diagnostics). */
MMK_API size_t mmk_fault_area_count(void);

/* ------------------------------------------------------------------------ */
/* Mirrors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A mirror is one piece of shared memory (a memfd) mapped twice in the same
 * process: a read-write view and a read-only view of exactly the same bytes.
 * Hand out only read-only pointers to code you do not trust; do every
 * legitimate write through the read-write view inside a write window.  A
 * store through the read-only view faults, and the fault router hands it to
 * the mirror, which reports it with its address, the mirror and the offset,
 * and a backtrace (see mmk_mirror_set_policy()).
 *
 * Layout: the two views are adjacent, read-write first: mmk_mirror_ro(m) ==
 * (char *)mmk_mirror_rw(m) + mmk_mirror_size(m).  Both views and the memory
 * are owned by the mirror and disappear with mmk_mirror_destroy().
 *
 * Limits (all inherent to page protection):
 *  - A system call that writes into the read-only view (read(2) into it, for
 *    example) fails with EFAULT; no signal is raised, so nothing is reported.
 *  - Protection is per process: in MMK_MIRROR_GUARD mode, while one thread
 *    holds a write window the read-write view is writable for every thread.
 *  - Write windows serialise the writers of one process only.  Processes that
 *    share a mirror through its fd must coordinate their writers themselves.
 */
typedef struct mmk_mirror mmk_mirror;

/* Flags of mmk_mirror_create() and mmk_mirror_open_fd(). */
enum {
    /*
     * Outside a write window the read-write view is inaccessible (PROT_NONE),
     * so a read-write pointer that leaked out of a window is caught too, on
     * read as well as on write.  Entering and leaving a window then costs one
     * mprotect(2) each.
     */
    MMK_MIRROR_GUARD = 1u << 0
};

/*
 * Create a mirror of at least size bytes (rounded up to whole pages),
 * zero-filled.  The memory is an anonymous memfd (no file on disk), sealed
 * against shrinking and growing, so another process that maps it can never
 * make this one fault.  Both views are registered with the fault
 * router (installing it if needed); the default policy is MMK_MIRROR_ABORT.
 * Errors (NULL + errno; nothing is left mapped, registered or open): EINVAL
 * for size 0 or an unknown flag, ENOMEM if the address space cannot hold
 * both views, any errno of memfd_create, ftruncate or mmap.
 */
MMK_API mmk_mirror *mmk_mirror_create(size_t size, unsigned flags);

/*
 * Unmap both views, unregister them from the fault router, close the
 * mirror's fd and free m.  Pointers into either view are dangling afterwards;
 * other processes that opened the same memory keep it.  -EINVAL for NULL;
 * -EBUSY (and m is untouched) if a write window is open on any thread.
 * Must not be called from a fault handler (-EDEADLK).
 */
MMK_API int mmk_mirror_destroy(mmk_mirror *m);

/* Base of the read-write view (NULL for a NULL m).  Owned by the mirror. */
MMK_API void *mmk_mirror_rw(mmk_mirror *m);

/* Base of the read-only view (NULL for a NULL m).  Owned by the mirror. */
MMK_API const void *mmk_mirror_ro(mmk_mirror *m);

/* Size of each view in bytes, a multiple of the page size (0 for NULL). */
MMK_API size_t mmk_mirror_size(const mmk_mirror *m);

/*
 * Convert a pointer into either view to its twin in the read-write view: the
 * same byte, writable.  O(1), lock-free, async-signal-safe and idempotent: a
 * read-write pointer comes back unchanged, so converting twice is harmless.
 * Only pointers to a byte inside the mirror convert (one past the end does
 * not).  Errors: NULL with errno EFAULT for a pointer outside both views,
 * EINVAL for a NULL m.
 */
MMK_API void *mmk_rw(mmk_mirror *m, const void *p);

/* The same as mmk_rw(), towards the read-only view. */
MMK_API const void *mmk_ro(mmk_mirror *m, const void *p);

/*
 * Open a write window.  Windows serialise writers: one thread at a time holds
 * the mirror's lock (the call blocks while another thread holds it).  They
 * nest: a thread that already holds the window just counts one level deeper.
 * In the default mode an uncontended window costs no system call; with
 * MMK_MIRROR_GUARD the outermost begin makes the read-write view accessible
 * (one mprotect).  Readers never need a window: they read through the
 * read-only view without locking (order reads and writes yourself, with
 * atomics, as for any memory shared between threads).
 * Returns 0, -EINVAL for NULL, or the -errno of mprotect (guard mode; the
 * window is then not open).  A thread must close every window it opened
 * before it exits.
 */
MMK_API int mmk_mirror_begin_write(mmk_mirror *m);

/*
 * Close one level of the calling thread's write window.  The outermost end
 * releases the lock and, with MMK_MIRROR_GUARD, makes the read-write view
 * inaccessible again.  Returns 0; -EINVAL for NULL; -EPERM if the calling
 * thread holds no window; the -errno of mprotect (guard mode; the window is
 * closed anyway, but the view may have stayed accessible).
 */
MMK_API int mmk_mirror_end_write(mmk_mirror *m);

/*
 * The mirror's memfd, for passing the memory to another process (over a Unix
 * socket, or across fork+exec).  Owned by the mirror: do not close it.  It is
 * close-on-exec; dup it (or clear FD_CLOEXEC on a dup) to pass it to exec.
 * -EINVAL for NULL.
 */
MMK_API int mmk_mirror_fd(const mmk_mirror *m);

/*
 * Map the memory behind fd (a mirror's fd from another process, or any
 * memfd/tmpfs file opened read-write whose size is a non-zero multiple of
 * the page size) as a new mirror in this process, with its own views, its own
 * write-window lock and policy, and flags (MMK_MIRROR_GUARD or 0).  The
 * mirror works on its own duplicate of fd: the caller keeps fd and closes it
 * when it likes.  Errors (NULL + errno, nothing left mapped or open): EINVAL
 * for an unknown flag or a size that is 0 or not page-aligned, EBADF, ENOMEM,
 * EACCES for a descriptor not open read-write or sealed against writing
 * (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE; checked in every mode, so a guarded
 * mirror never opens only to fail every begin_write), any errno of fstat,
 * fcntl or mmap.
 */
MMK_API mmk_mirror *mmk_mirror_open_fd(int fd, unsigned flags);

/*
 * What a mirror does with a stray access: a write through the read-only
 * view, or any access to a guarded read-write view outside a write window.
 *
 * MMK_MIRROR_ABORT (the default): write one line to stderr,
 *     mmkit: stray write at ADDR (mirror M, offset N)
 * where ADDR is the faulting address in hex, M the mmk_mirror handle in hex
 * and N the decimal offset into the mirror ("stray read" for a read through a
 * leaked guarded read-write pointer, "stray access" when the CPU does not
 * say), then a backtrace (glibc backtrace_symbols_fd, one frame a line; the
 * first few frames are mmkit's handler, then the signal trampoline, then the
 * faulting function; names need -rdynamic), then
 * the process dies of SIGSEGV with the default action (core dump included).
 * SIGSEGV's previous handler is bypassed: the process always ends.
 *
 * MMK_MIRROR_CALLBACK: call cb(fault, ctx) from the signal handler instead
 * (cb must be async-signal-safe).  Its return value decides: MMK_FAULT_PASS
 * hands the fault to the handler the process had before mmkit (SIG_DFL: the
 * process dies of SIGSEGV); MMK_FAULT_RETRY re-runs the access, which only
 * makes sense if cb removed the cause.  mmk_rw()/mmk_ro() work in cb.
 *
 * MMK_MIRROR_WATCH (x86-64 only; -ENOTSUP elsewhere): report the access with
 * the same line, "watched" instead of "stray", and a backtrace, then let that
 * one instruction run and protect the page again: every later stray access is
 * reported again.  The production replacement for a watchpoint.  While the
 * instruction runs, its page is open to all threads for a few microseconds;
 * a REP-string instruction is reported once per page it touches.  The
 * process's SIGTRAP handler is taken over (others are chained to).
 *
 * cb and ctx are used only with MMK_MIRROR_CALLBACK (cb is required there and
 * must be NULL otherwise).  Returns 0, or -EINVAL for NULL m, an unknown
 * policy or a wrong cb, -EDEADLK from inside a fault handler (a callback
 * cannot change the policy; nothing changes).  Thread-safe: policy, cb and
 * ctx change together (a stray access sees the old triple or the new one,
 * never a mix), and when the call returns no thread runs the old callback
 * any more (it waits for those running).
 */
enum { MMK_MIRROR_ABORT = 0, MMK_MIRROR_CALLBACK = 1, MMK_MIRROR_WATCH = 2 };
MMK_API int mmk_mirror_set_policy(mmk_mirror *m, unsigned policy, mmk_fault_fn cb, void *ctx);

/*
 * Number of stray accesses this mirror has seen (every policy counts; a
 * lock-free read).  0 for NULL.
 */
MMK_API size_t mmk_mirror_strays(const mmk_mirror *m);

/*
 * Magic ring buffers.  mmk_ring_create() maps a memfd of size bytes (rounded
 * up to whole pages) twice, back to back, read-write: byte base[i] and byte
 * base[i + size] are the same memory, so a read or write of up to size bytes
 * starting anywhere in [base, base + size) is one contiguous access even when
 * it wraps.  Placement is race-free (the whole 2 * size range is reserved
 * first, then both halves are mapped into it with MAP_FIXED) and no
 * temporary file is created.  The ring only provides the memory: keeping head
 * and tail indices (modulo size) is the caller's job.
 * Errors (NULL + errno, nothing left mapped or open): EINVAL for size 0,
 * ENOMEM, any errno of memfd_create, ftruncate or mmap.
 */
typedef struct mmk_ring mmk_ring;
MMK_API mmk_ring *mmk_ring_create(size_t size);
/* Base of the doubled mapping (2 * size bytes).  NULL for NULL. */
MMK_API void *mmk_ring_base(mmk_ring *r);
/* Size of the ring (one half of the mapping).  0 for NULL. */
MMK_API size_t mmk_ring_size(const mmk_ring *r);
/* Unmap and free.  0, or -EINVAL for NULL. */
MMK_API int mmk_ring_destroy(mmk_ring *r);

/* ------------------------------------------------------------------------ */
/* Growable arenas                                                           */
/* ------------------------------------------------------------------------ */

/*
 * A growable arena is a file mapped MAP_SHARED over a large reserved address
 * range.  The file holds exactly the bytes the program used; touching any
 * address in [base, base + reserve) past the end of the file grows the file
 * (a SIGBUS handled through the fault router, see mmk_area_register) and the
 * access is retried.  Nothing is ever remapped: pointers into the arena stay
 * valid until mmk_arena_close.  Use it to build a structure of unknown final
 * size straight into a file (a message, a log, a heap image).
 *
 * Growth.  A fault grows the file by a chunk: the current size, clamped to
 * [min_chunk, max_chunk] (1 MiB and 256 MiB by default; mmk_arena_set_growth),
 * so the number of growth faults is logarithmic, then linear in steps of
 * max_chunk.  Files grow with fallocate(2), which never shrinks a file and
 * allocates the blocks (so a full disk shows up at growth time, not later);
 * where fallocate is unsupported and for anonymous arenas, with ftruncate(2)
 * under a lock that can never self-deadlock.  Growth from several threads
 * and from several processes that opened the same file (or that share an
 * anonymous arena through fork()) is correct: a process whose view is
 * behind finds the file long enough and just retries.  A child of fork()
 * may grow and close an inherited arena, and open new ones, even if other
 * threads of the parent were growing arenas or taking faults as it forked.
 *
 * Used size.  "Used" is max(allocation pointer, offset of the last non-zero
 * byte + 1).  The allocation pointer starts at the used size found at open
 * and advances with mmk_arena_alloc; plain stores anywhere count through the
 * last-non-zero rule, including stores to pages that never faulted, in
 * anonymous arenas too.  Zero bytes stored past both are indistinguishable
 * from growth slack: allocate them if they matter.
 *
 * Disk full (ENOSPC, EDQUOT, RLIMIT_FSIZE -> EFBIG): the explicit calls
 * (mmk_arena_reserve, mmk_arena_alloc) return the error and change nothing
 * the program can see: the allocation pointer and the used size stay, and
 * the program may free space and call again.  A plain load or store that
 * needs the file to grow cannot return an error: if the file cannot be
 * extended, mmkit writes one line to stderr,
 *
 *   mmkit: arena PATH: cannot extend the file to back offset N: ENOSPC (28, ...)
 *
 * and the process dies of SIGBUS (the default action is restored first, so
 * no handler can turn it into a hang).  The file stays consistent: it holds
 * every byte stored before.  Call mmk_arena_reserve (or alloc) ahead of
 * stores if running out of disk must be survivable.  To make RLIMIT_FSIZE
 * an error instead of a kill, opening a writable arena sets SIGXFSZ to
 * SIG_IGN if it had its default action.
 *
 * System calls do not fault: read(2) into arena memory past the end of the
 * file fails with EFAULT instead of growing it.  mmk_arena_reserve first.
 *
 * Thread safety: every call may be used from several threads at once,
 * except mmk_arena_close, which must be the last call on the handle.
 */
typedef struct mmk_arena mmk_arena;

enum {
    MMK_ARENA_CREATE   = 1u << 0, /* create the file if missing (mode 0666 & ~umask) */
    MMK_ARENA_RDONLY   = 1u << 1, /* map read-only; the file never grows */
    MMK_ARENA_EXCL     = 1u << 2, /* with CREATE: fail with EEXIST if the file exists */
    MMK_ARENA_TRUNC    = 1u << 3, /* start from an empty file */
    MMK_ARENA_NOFOLLOW = 1u << 4, /* fail with ELOOP if path is a symbolic link */
};

/*
 * Open (or with MMK_ARENA_CREATE create) the file at path as an arena of
 * reserve bytes of address space (rounded up to a page; the file may grow to
 * that).  path NULL makes an anonymous arena on a memfd (gone at close;
 * MMK_ARENA_RDONLY is refused).  An existing file keeps its bytes; the used
 * size is recovered (see mmk_arena_used).  A writable file whose size is not
 * a page multiple is extended to the end of its last page (a store there
 * cannot fault); close trims it back.  MMK_ARENA_TRUNC empties the file
 * only once everything else succeeded, and only if no other handle has it
 * open (EBUSY otherwise).  A failed open leaves the file as it was (a file
 * it created is removed again) and SIGXFSZ as it was.
 *
 * Read-only arenas map the file PROT_READ: a store gets SIGSEGV as for any
 * read-only mapping, and a load past the end of the file gets SIGBUS as for
 * any mapped file (mmkit passes both on unhandled).  The file may be grown
 * by a writer in another process: that is seen at once.
 *
 * Errors (NULL + errno): EINVAL for reserve 0, unknown flags, EXCL without
 * CREATE, TRUNC with RDONLY, or a path that is not a regular file; ENOMEM
 * for a reserve the address space cannot hold; EISDIR for a directory;
 * ELOOP for a symbolic link with MMK_ARENA_NOFOLLOW; EFBIG for a file larger
 * than reserve (without TRUNC); EBUSY for TRUNC while another handle has
 * the file open; ENOSPC, EDQUOT, EFBIG if the last page cannot be
 * completed; anything open(2), mmap(2) or mmk_area_register report
 * (ENOENT, EEXIST, EACCES, ...).
 */
MMK_API mmk_arena *mmk_arena_open(const char *path, size_t reserve, unsigned flags);

/*
 * Close the arena: for a writable file arena, trim the file to the used size
 * (never cutting off a byte the program wrote; skipped while another handle,
 * in this or another process, still has the file open, and for a file
 * longer than this handle's reservation), record the used size (extended
 * attribute user.mmkit.used; never lower than what another handle recorded
 * there) and fsync.  The trim needs the exclusive flock(2): on a filesystem
 * without flock the file keeps its growth slack.  Then unmap and free.
 * The handle is gone even on error; the error is the first of ftruncate /
 * fsync (-EIO, ...).  -EINVAL for NULL; -EDEADLK from inside a fault handler
 * (then nothing happened and the handle is still open).
 */
MMK_API int    mmk_arena_close(mmk_arena *a);

/* The first byte of the reservation (constant for the arena's life). */
MMK_API void  *mmk_arena_base(const mmk_arena *a);

/* Bytes of file backing the arena now (an fstat: includes growth by other
 * processes and the slack of the last growth chunk). */
MMK_API size_t mmk_arena_size(const mmk_arena *a);

/*
 * Bytes the program has used: max(allocation pointer, last non-zero byte
 * + 1).  Costs a backwards scan of the data past the allocation pointer
 * (holes are skipped).  After close and reopen it is the same value; after a
 * crash it is max(pointer recorded by the last mmk_arena_sync, last non-zero
 * byte + 1).  A file that mmkit did not write (no user.mmkit.used attribute,
 * or a filesystem without user xattrs) counts as used up to its end, and so
 * does a file longer than this handle's reservation.
 */
MMK_API size_t mmk_arena_used(const mmk_arena *a);

/*
 * Make the file at least len bytes long (rounded up to a page) now.
 * 0 or: -ENOSPC, -EDQUOT (disk or quota full), -EFBIG (RLIMIT_FSIZE, or the
 * filesystem's limit), -ENOMEM (len > reserve), -EBADF (read-only arena),
 * -EIO; on error the used size and allocation pointer are unchanged (a
 * filesystem may keep blocks it allocated before running out; close trims
 * them).
 */
MMK_API int    mmk_arena_reserve(mmk_arena *a, size_t len);

/*
 * Bump allocation of len bytes aligned to align (a power of two; 0 means
 * 16), from the allocation pointer; the file is grown (by a chunk) first if
 * needed.  Thread-safe and lock-free.  Never freed individually.
 * NULL + errno: EINVAL (len 0, align not a power of two), ENOMEM (the
 * reservation is full), EBADF (read-only), or the growth's error (ENOSPC,
 * EDQUOT, EFBIG, ...), in which case nothing changed.
 */
MMK_API void  *mmk_arena_alloc(mmk_arena *a, size_t len, size_t align);

/*
 * Record the allocation pointer and fsync: every byte stored before a
 * successful sync survives kill -9 and power loss, and reopening finds it
 * (and the used size at least as large as then).  0 for anonymous and
 * read-only arenas; otherwise 0 or fsync's error (-EIO, -ENOSPC).
 */
MMK_API int    mmk_arena_sync(mmk_arena *a);

/*
 * Set the growth chunk range (rounded up to pages; 0 for a default): each
 * growth extends the file by its current size clamped to [min_chunk,
 * max_chunk].  Larger chunks mean fewer faults and more slack until close.
 * Values above the reservation are clamped to it (SIZE_MAX: grow to the
 * whole reservation at once).  -EINVAL for NULL or min_chunk > max_chunk.
 */
MMK_API int    mmk_arena_set_growth(mmk_arena *a, size_t min_chunk, size_t max_chunk);

struct mmk_arena_stats {
    size_t reserve; /* bytes of address space reserved */
    size_t size;    /* mmk_arena_size */
    size_t used;    /* mmk_arena_used */
    size_t faults;  /* SIGBUS faults this handle handled (growth faults) */
    size_t grows;   /* times this handle extended the file (faults + explicit) */
};

/* Fill st.  0, or -EINVAL for NULL arguments. */
MMK_API int    mmk_arena_stats(const mmk_arena *a, struct mmk_arena_stats *st);

/* ------------------------------------------------------------------------ */
/* Regions and snapshots                                                     */
/* ------------------------------------------------------------------------ */

/*
 * A region is memory you can snapshot.  mmk_region_create() gives a live,
 * zero-filled, writable range of memory at a stable address.
 * mmk_region_snapshot() gives a point-in-time copy of any view (a live region,
 * a snapshot, a branch): read-only, or with MMK_SNAP_WRITABLE a writable
 * branch that can itself be snapshotted.  There is no limit on the number or
 * the nesting of snapshots, and every one is readable by pointer
 * (mmk_region_base) at the same time as the others.
 *
 * How: all views share a pool of pages (one memfd); each view has its own
 * page table, a tree whose nodes are shared between views and copied on
 * write.  A snapshot costs O(1) metadata plus a write-protect of the pages
 * written since the previous snapshot.  The first write to a shared page
 * afterwards faults; mmkit's handler copies the page and maps the copy in
 * place - the kernel's copy-on-write, for one region, in user space.
 *
 * Threads: all calls are thread-safe, and other threads may read and write
 * views while a snapshot is taken.  mmkit starts one background thread (all
 * signals blocked) the first time a snapshot write-protects a large run: it
 * releases page tables that the snapshot moved out of the way.  A snapshot holds every write that
 * completed before mmk_region_snapshot returned and none that started after.
 *
 * System calls: a system call that writes into a region page that is not
 * writable at that moment (read(2) into a buffer just after a snapshot)
 * fails with EFAULT instead of faulting.  Call mmk_region_prepare_write() on
 * the buffer first.  Reads by the kernel (write(2) from a region) may
 * likewise fail with EFAULT on a page that is not mapped yet; touch it or use
 * mmk_region_read() first.
 *
 * Signals: the write-fault handler takes mmkit's engine lock.  A signal
 * handler of yours that touches region memory while the same thread is inside
 * an mmkit region call dies with SIGSEGV instead of deadlocking.
 *
 * fork(): regions are not inherited.  In the child of fork() the region
 * memory is not mapped (MADV_DONTFORK), so an access dies with SIGSEGV, and
 * every region call fails with -MMK_ESTATE (mmk_region_base and
 * mmk_region_snapshot: NULL with errno MMK_ESTATE); mmk_region_destroy()
 * only frees the handle.  The child can never write into the parent's
 * regions.
 *
 * Mappings: mmkit keeps the mappings its views hold under a budget (default:
 * half of vm.max_map_count).  Its count never falls below the kernel's: it
 * assumes no merge of neighbouring mappings, and near the budget it asks the
 * kernel (PROCMAP_QUERY or /proc/self/maps) and lowers the count to what the
 * kernel holds.  When a new mapping would still pass the budget, the view
 * with the most mappings is unmapped and refaults on demand: data is never
 * lost, and a write never fails for lack of mappings.  The kernel's count of
 * mappings in the views' address range never passes the budget.
 */
typedef struct mmk_region mmk_region;

/* mmk_region_snapshot flag: the snapshot is a writable branch. */
#define MMK_SNAP_WRITABLE 0x1u

/*
 * A live region of size bytes (rounded up to pages), zero-filled, writable,
 * mapped at mmk_region_base().  flags must be 0.
 * Errors: EINVAL (size 0, unknown flags), ENOMEM (more than the pool's 1 TiB
 * window or the address space can hold), MMK_ESTATE (in a child of fork).
 */
MMK_API mmk_region *mmk_region_create(size_t size, unsigned flags);

/*
 * A snapshot of view r: its bytes are r's bytes now and never change (unless
 * MMK_SNAP_WRITABLE: a branch you may write, which starts as r's bytes).
 * r may be any view, including a snapshot.  Cost: O(1) metadata plus a
 * write-protect of the pages r made writable since its last snapshot.
 * Errors: EINVAL (NULL, unknown flags), ENOMEM, MMK_ESTATE.
 */
MMK_API mmk_region *mmk_region_snapshot(mmk_region *r, unsigned flags);

/*
 * Destroy any view, in any order: the others are unaffected.  Pool pages no
 * view refers to any more are returned to the kernel.  Pointers into the
 * view become invalid; no other thread may be using it.
 */
MMK_API int mmk_region_destroy(mmk_region *r);

/*
 * Where the view's bytes are.  Stable for the view's lifetime.  For a
 * snapshot the address range is reserved on the first call (NULL + errno on
 * failure); pages are mapped on demand and may be unmapped again under
 * mapping pressure, invisibly to the program.  Writing through the base of a
 * read-only snapshot kills the process with SIGSEGV after one line on stderr.
 */
MMK_API void  *mmk_region_base(mmk_region *r);
MMK_API size_t mmk_region_size(const mmk_region *r);

/*
 * Copy len bytes at offset off of view r into buf, without mapping anything.
 * buf may be anywhere, even in a region.  -ERANGE if [off, off+len) is not
 * inside the view.  A view that other threads write at the same time gives
 * no consistent copy (writes to pages already writable do not wait for
 * mmkit); for one, snapshot first and read the snapshot.
 */
MMK_API int    mmk_region_read(const mmk_region *r, size_t off, void *buf, size_t len);

/*
 * dst's bytes become src's bytes (sizes must match: -MMK_ESIZE otherwise).
 * Time is proportional to the pages that differ, not to the size.  dst must
 * be writable (a live region or a branch): -EROFS otherwise.  src's bytes
 * are not changed and it stays independent of dst; like a snapshot of src,
 * the call write-protects the pages src made writable since its last
 * snapshot (so src is not const).
 */
MMK_API int    mmk_region_restore(mmk_region *dst, mmk_region *src);

/*
 * Make [off, off+len) of a writable view private and writable now, in bulk
 * (one copy and one mapping per batch instead of one fault per page).  After
 * it, system calls may write into the range (read(2), recv(2)): see EFAULT
 * above - until mmkit next unmaps the view to stay under the mapping budget,
 * so call it right before the system call.  Errors: -ERANGE, -EROFS (a
 * read-only snapshot), -ENOMEM, -MMK_EBUDGET, or the pool's write error
 * (-ENOSPC on a full /dev/shm); on error nothing changed.
 */
MMK_API int    mmk_region_prepare_write(mmk_region *r, size_t off, size_t len);

/*
 * Call fn(off, len, ctx) for every maximal run of pages whose backing
 * differs between a and b (same size: -MMK_ESIZE otherwise), in address
 * order.  "Differs" is by backing: a page written with the same bytes counts
 * as different.  Cost follows the differences (shared subtrees are skipped).
 * A non-zero return from fn stops the walk and is returned.
 */
typedef int (*mmk_diff_fn)(size_t off, size_t len, void *ctx);
MMK_API int    mmk_region_diff(const mmk_region *a, const mmk_region *b, mmk_diff_fn fn, void *ctx);

struct mmk_region_stats {
    size_t pages;          /* pages in the view */
    size_t private_pages;  /* pages with memory of their own (no other view shares them) */
    size_t shared_pages;   /* pages whose memory another view shares */
    size_t pool_pages;     /* pool pages in use by all views together */
    size_t mappings;       /* kernel mappings this view holds now, at most */
    size_t total_mappings; /* kernel mappings all views hold now, at most */
    size_t budget;         /* the budget total_mappings is kept under */
    size_t nodes;          /* page-table nodes in use by all views together */
};
MMK_API int    mmk_region_stats(const mmk_region *r, struct mmk_region_stats *st);

/*
 * Set the mapping budget for all regions (0: the default, half of
 * vm.max_map_count).  Any other value must be at least 16 and at most
 * vm.max_map_count (read now): -EINVAL otherwise (SIZE_MAX, anything above
 * LONG_MAX), and the budget is unchanged.  Views are unmapped at once if the
 * mappings held pass the new budget (-MMK_EBUDGET if they cannot).
 * -MMK_ESTATE in a child of fork().
 */
MMK_API int    mmk_region_set_budget(size_t mappings);


/* ------------------------------------------------------------------------ */
/* SysV shared memory over files                                             */
/* ------------------------------------------------------------------------ */

/*
 * shmget/shmat/shmdt/shmctl with Linux semantics, over files that persist:
 * every segment is a file in one store directory, $MMKIT_SHM_DIR, default
 * /var/lib/mmkit/shm (created sticky and world-writable, like /dev/shm, when
 * root first uses it).  The store is shared by every user of the machine;
 * each segment file carries the segment's owner, group and mode, and the
 * filesystem enforces them.  See mmk_shm(3) and docs/shm.md for exactly what
 * this guarantees against a hostile local user.
 *
 * Differences from the kernel calls: failures return -errno instead of -1
 * and errno; mmk_shmat returns the address through *addr.  The error codes
 * are the kernel's (shmget(2), shmat(2), shmctl(2)), plus -EPERM for a store
 * directory that others may write without the sticky bit, and
 * -MMK_ECORRUPT for a store entry that fails its checks (a forged or damaged
 * file).  All four calls are thread-safe and fork-safe (an attach inherited
 * across fork() counts in shm_nattch; exec and exit detach).
 */
#include <sys/ipc.h>
#include <sys/shm.h>

/* Like shmget(2).  Returns the segment id (>= 0) or -errno. */
MMK_API int mmk_shmget(key_t key, size_t size, int shmflg);
/* Like shmat(2): SHM_RDONLY, SHM_RND, SHM_REMAP, SHM_EXEC.  On success
 * *addr is the attach address and 0 is returned. */
MMK_API int mmk_shmat(int shmid, const void *shmaddr, int shmflg, void **addr);
/* Like shmdt(2): -EINVAL if shmaddr is not an attach address. */
MMK_API int mmk_shmdt(const void *shmaddr);
/* Like shmctl(2): IPC_STAT, IPC_SET, IPC_RMID, SHM_LOCK, SHM_UNLOCK,
 * IPC_INFO (buf is a struct shminfo *), SHM_INFO (a struct shm_info *),
 * SHM_STAT and SHM_STAT_ANY (shmid is an index, the id is returned).
 * Returns 0, or the value shmctl(2) documents for the command, or -errno. */
MMK_API int mmk_shmctl(int shmid, int cmd, struct shmid_ds *buf);

/*
 * The store's limits (shmmax: largest segment in bytes; shmmni: number of
 * ids; shmall: total pages, reported only).  Read from the file "limits" in
 * the store, trusted only when owned by root or the directory's owner and
 * writable by nobody else; otherwise the defaults (shmmax and shmall as the
 * kernel's defaults, shmmni 4096).
 */
MMK_API int mmk_shm_limits(struct shminfo *lim);
/* Replace the store's limits (the directory's owner or root: else -EPERM).
 * shmmni at most 32768, shmmax at least 1: else -EINVAL. */
MMK_API int mmk_shm_set_limits(const struct shminfo *lim);
/* The store directory in use (at most len-1 bytes, NUL-terminated). */
MMK_API int mmk_shm_dir(char *buf, size_t len);
/* ==== Fault reports ==========================================================
 *
 * mmkit's fatal and watch-mode reports name the faulting frame first and its
 * callers after it, valgrind style, leaving out mmkit's handler and the
 * signal trampoline:
 *
 *     mmkit: stray write at 0x7f3c2d1f5020 (mirror 0x55d0c53e02a0, offset 32)
 *         #0 plugin_round (stray_write.c:65) [/srv/app/stray_write+0x396b va=0x396b id=1046...]
 *         #1 main (stray_write.c:90) [/srv/app/stray_write+0x36eb va=0x36eb id=1046...]
 *         #2 __libc_start_call_main+0x7a (libc.so.6) [/usr/lib/.../libc.so.6+0x271ca va=... id=...]
 *
 * A frame is "function (file:LINE)" where there is debug information,
 * "function+0xOFF (object)" where there are only symbols, "object+0xOFF"
 * otherwise; calls the compiler inlined get lines of their own ("(inlined)").
 * The bracket, on every frame, is what naming it needs later and elsewhere:
 * the object's path, the file offset, the address in the object's own
 * address space (va=) and the object's build-id (id=).
 * The frames are collected in the signal handler and named outside it: by
 * a reporter thread when the process goes on (watch mode, callbacks), by
 * `mmkit symbolize` started with fork + execve when it dies (environment:
 * MMKIT_SYMBOLIZER, the mmkit program to run, "" for none; MMKIT_SYMBOLIZE_MS,
 * its time limit, default 3000).  Whatever fails, the raw frames
 * ("object+0xOFF [key]") are written instead.
 */

/* Start mmkit's reporter thread (once; a mirror's watch or callback policy
 * starts it too).  Not from a signal handler.  0 or -errno. */
MMK_API int mmk_report_start(void);

/* Flag of mmk_fault_report(): name the frames now, with the symbolizer
 * process and its time limit (for a handler about to end the process). */
enum { MMK_REPORT_NOW = 1u << 0 };

/*
 * From a fault handler (async-signal-safe): report f on stderr as the line
 * "mmkit: TEXT" and the frames of the faulting context.  Without
 * MMK_REPORT_NOW the reporter thread names and writes it while the call
 * waits, at most the time limit (past it the call returns and the thread
 * writes the report when it can); with raw frames at once if the thread is
 * not running or its queue of 8 reports is full.  0, or -EINVAL (NULL f or
 * text, unknown flags).
 */
MMK_API int mmk_fault_report(const mmk_fault *f, const char *text, unsigned flags);

/*
 * Name the frame lines of a report (text of len bytes, untrusted) and return
 * the report with each frame renamed, other lines unchanged, as a malloc'ed
 * NUL-terminated string (its length in *out_len if not NULL); NULL and errno
 * on failure.  Objects are looked up in debug_dir (if not NULL) by build-id
 * (.build-id/xx/rest.debug) and by name (NAME.debug, NAME), then at the path
 * in the report, then in /usr/lib/debug; a file is used only if its build-id
 * matches.  `mmkit symbolize` is this call on stdin.
 */
MMK_API char *mmk_report_symbolize(const char *text, size_t len, const char *debug_dir,
                                   size_t *out_len);
/* ------------------------------------------------------------------------ */
/* Segment server client (mmkitd)                                            */
/* ------------------------------------------------------------------------ */

/*
 * mmkitd owns shared-memory segments (sealed memfds) and hands descriptors
 * to clients over a Unix SOCK_SEQPACKET socket after checking the peer's
 * credentials against the segment's owner, group and mode, like a file.
 * See mmk_client(3) and mmkit-server(1).
 *
 * A connection (mmk_client) is used by one thread at a time; open one per
 * thread.  Every call that waits has a timeout (the connection's default,
 * mmk_client_set_timeout, 5000 ms unless changed) and returns -ETIMEDOUT
 * when it passes.  A server that goes away gives -EPIPE or -ECONNRESET.
 * Errors the server reports come back as negative errno values: -ENOENT (no
 * such segment), -EEXIST, -EACCES (mode forbids it), -EINVAL, -EFBIG (size
 * above the server's limit), -EMFILE/-ENOSPC (a server limit), -EPROTO (the
 * server could not parse a message).
 *
 * Segment names: 1 to MMK_SEG_NAME_MAX bytes of [A-Za-z0-9._-], not
 * starting with '.'.
 */
#define MMK_SEG_NAME_MAX 255

typedef struct mmk_client mmk_client;

typedef struct mmk_seg_info {
    char     name[MMK_SEG_NAME_MAX + 1];
    uint64_t size;        /* bytes */
    uint32_t mode;        /* permission bits, 0777 at most */
    uint32_t uid, gid;    /* owner: the creator's credentials */
    uint64_t version;     /* bumped by every publish and grow */
    uint32_t holders;     /* opens not yet released (a connection's end releases its own) */
    uint32_t subscribers; /* connections subscribed to this segment */
    uint64_t mtime_ns;    /* CLOCK_REALTIME of the last change */
} mmk_seg_info;

/* Event kinds pushed to subscribers (and to the server's event stream). */
enum {
    MMK_EV_CREATE = 1, /* a segment was created */
    MMK_EV_WRITE  = 2, /* a writer published [offset, offset + length), or a grow */
    MMK_EV_REMOVE = 3, /* the name was removed */
    MMK_EV_ATTACH = 4, /* a client opened the segment (holders went up) */
    MMK_EV_DETACH = 5  /* a holder released it or its connection ended */
};

typedef struct mmk_seg_event {
    uint64_t     seq;     /* server-wide sequence number, increasing by one per event */
    unsigned     kind;    /* MMK_EV_* */
    uint64_t     offset;  /* MMK_EV_WRITE: the range published */
    uint64_t     length;
    mmk_seg_info info;    /* the segment as it was right after the change */
} mmk_seg_event;

/* Open flags. */
enum { MMK_SEG_RDONLY = 0, MMK_SEG_RDWR = 1 };

/*
 * The socket path a server or client uses when given none: $MMKIT_SOCKET,
 * else $XDG_RUNTIME_DIR/mmkit.sock, else /run/mmkit.sock.  Writes it to buf
 * (NUL-terminated) and returns its length, or -ENAMETOOLONG.
 */
MMK_API int mmk_server_default_path(char *buf, size_t cap);

/*
 * Connect to the server at path (NULL: mmk_server_default_path) and say
 * hello, waiting at most timeout_ms (<= 0: 5000) for its answer.  NULL and
 * errno on failure (ENOENT/ECONNREFUSED: no server, ETIMEDOUT, EPROTO: it
 * is not an mmkit server of a version this library speaks).
 */
MMK_API mmk_client *mmk_client_connect(const char *path, int timeout_ms);
/* Close the connection; the server releases its opens and subscriptions.
 * Descriptors returned by mmk_seg_open stay valid.  NULL is ignored. */
MMK_API void mmk_client_close(mmk_client *c);
/* A descriptor for poll/epoll (an epoll set of the socket and the bells of
 * the event rings): readable when a reply or an event may be waiting.  Take
 * with timeout 0 until the call fails, then poll again; a call right after
 * one that returned a ring event may fail without looking and leave the
 * descriptor readable, so the next poll returns at once.  Replies or events
 * already queued by a synchronous call make no noise on it: check
 * mmk_client_pending first. */
MMK_API int mmk_client_fd(const mmk_client *c);
/* Replies and events read but not yet taken, ring events included. */
MMK_API size_t mmk_client_pending(const mmk_client *c);
/* Timeout of the synchronous calls, in ms (> 0). */
MMK_API int mmk_client_set_timeout(mmk_client *c, int timeout_ms);

/* Synchronous calls: send one request, wait for its reply.  Replies to
 * asynchronous requests and events that arrive meanwhile are queued. */

/* Create name with size bytes (zero-filled) and mode (<= 0777), owned by
 * the caller's uid and gid.  size may be 0 (grow it later). */
MMK_API int mmk_seg_create(mmk_client *c, const char *name, uint64_t size, unsigned mode);
/*
 * Open name for reading (MMK_SEG_RDONLY) or reading and writing
 * (MMK_SEG_RDWR).  Returns a new descriptor (close-on-exec) that the caller
 * owns, and fills *info (may be NULL).  A read-only descriptor can never be
 * made to write the segment: mmap PROT_WRITE MAP_SHARED and a later mprotect
 * fail, and reopening /proc/self/fd/N read-write is refused to anyone but
 * the server's own uid and root.  The segment can never shrink (F_SEAL_SHRINK):
 * mapping its whole size is always safe.  The open counts as one holder
 * until mmk_seg_release or the end of the connection.
 */
MMK_API int mmk_seg_open(mmk_client *c, const char *name, unsigned flags, mmk_seg_info *info);
/* Release one open of name made on this connection (holders go down). */
MMK_API int mmk_seg_release(mmk_client *c, const char *name);
MMK_API int mmk_seg_stat(mmk_client *c, const char *name, mmk_seg_info *info);
/* Call fn for every segment, in name order; a non-zero return from fn
 * stops the walk and is returned. */
MMK_API int mmk_seg_list(mmk_client *c, int (*fn)(const mmk_seg_info *info, void *ctx), void *ctx);
/* Remove the name now (owner or root only); the memory goes when the last
 * descriptor to it is closed. */
MMK_API int mmk_seg_remove(mmk_client *c, const char *name);
/* Grow to size bytes (write permission; never shrinks: -EINVAL). */
MMK_API int mmk_seg_grow(mmk_client *c, const char *name, uint64_t size);
/* Subscribe to name's events (read permission); NULL or "" subscribes to
 * every segment the caller may read, new ones included.  A subscription to
 * one segment reads the segment's event ring (the server writes each event
 * once for all ring readers and wakes them with one call); with
 * $MMKIT_EVENT_RING=0 at connect, events come as one message each. */
MMK_API int mmk_seg_subscribe(mmk_client *c, const char *name);
MMK_API int mmk_seg_unsubscribe(mmk_client *c, const char *name);
/* Tell subscribers that [offset, offset + length) changed (write
 * permission; length 0: the whole segment).  *version (may be NULL) gets
 * the new version. */
MMK_API int mmk_seg_publish(mmk_client *c, const char *name, uint64_t offset, uint64_t length,
                            uint64_t *version);
/* Wait up to timeout_ms (< 0: the connection's timeout; 0: do not wait) for
 * the next event; replies to asynchronous requests stay queued.  Events of
 * one segment come in order.  -EOVERFLOW: a ring reader fell more than 512
 * events behind and lost some; the next call returns the oldest kept. */
MMK_API int mmk_seg_next_event(mmk_client *c, mmk_seg_event *ev, int timeout_ms);

/*
 * Asynchronous calls: mmk_client_submit sends a request and returns its id
 * (> 0) at once; mmk_client_recv takes the next reply or event, whichever
 * came first, in any order relative to submission.  Many requests may be
 * outstanding.  Every op except MMK_OP_LIST may be submitted.
 */
enum {
    MMK_OP_CREATE = 2, MMK_OP_OPEN = 3, MMK_OP_STAT = 4, MMK_OP_LIST = 5,
    MMK_OP_REMOVE = 6, MMK_OP_GROW = 7, MMK_OP_SUBSCRIBE = 8,
    MMK_OP_UNSUBSCRIBE = 9, MMK_OP_PUBLISH = 10, MMK_OP_RELEASE = 11,
    MMK_OP_PING = 12
};

typedef struct mmk_request {
    unsigned    op;     /* MMK_OP_* */
    const char *name;
    uint64_t    size;   /* CREATE, GROW */
    uint64_t    offset; /* PUBLISH */
    uint64_t    length; /* PUBLISH */
    unsigned    mode;   /* CREATE */
    unsigned    flags;  /* OPEN: MMK_SEG_RDONLY or MMK_SEG_RDWR */
} mmk_request;

enum { MMK_MSG_REPLY = 1, MMK_MSG_EVENT = 2 };

typedef struct mmk_message {
    unsigned      kind;   /* MMK_MSG_REPLY or MMK_MSG_EVENT */
    uint32_t      id;     /* REPLY: the id mmk_client_submit returned */
    unsigned      op;     /* REPLY: the request's op */
    int           status; /* REPLY: 0 or a negative errno */
    int           fd;     /* REPLY to OPEN with status 0: the caller owns it; else -1 */
    uint64_t      version;/* REPLY to PUBLISH */
    mmk_seg_info  info;   /* REPLY to CREATE, OPEN, STAT, GROW, PUBLISH */
    mmk_seg_event event;  /* EVENT */
} mmk_message;

/* Returns the request id (> 0), or -EINVAL (bad op, name or flags),
 * -ETIMEDOUT (the socket stayed full for the connection's timeout), -EPIPE. */
MMK_API int mmk_client_submit(mmk_client *c, const mmk_request *req);
/* 0 and *m filled, or -ETIMEDOUT after timeout_ms (< 0: the connection's
 * timeout; 0: only what is already there), -EPIPE/-ECONNRESET, -EPROTO. */
MMK_API int mmk_client_recv(mmk_client *c, mmk_message *m, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_H */
