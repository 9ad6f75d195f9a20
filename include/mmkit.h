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
 * called; SIG_DFL (or SIG_IGN for a real fault) makes the process die of the
 * original signal, core dump included.  A fault outside every area is passed
 * the same way.
 *
 * fn must be async-signal-safe: no malloc, no stdio, no locks that the
 * faulting thread might hold.  It must return (siglongjmp out of fn is not
 * supported: the router would stay "inside a handler" on that thread and
 * mmk_area_unregister would wait for it forever).  A fault raised while fn
 * runs, on the same thread, is never dispatched to an area again: it goes
 * straight to the previous handler, so a buggy handler cannot loop.
 *
 * Lookup is lock-free (a sorted table, published atomically, binary search):
 * O(log areas).  Register and unregister are thread-safe and may run while
 * other threads fault.
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
 * overlaps an area already registered, ENOMEM.
 */
MMK_API mmk_area *mmk_area_register(void *start, size_t len, mmk_fault_fn fn, void *ctx);

/*
 * Remove an area.  Returns only when no handler of that area is still running
 * on any thread, so ctx may be freed afterwards.  -EINVAL for NULL or an area
 * that is not registered; -EDEADLK when called from inside a fault handler
 * (that would wait for itself).
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
 * any errno of fstat, fcntl or mmap.
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
 * say), then a backtrace (glibc backtrace_symbols_fd, one frame a line), then
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
 * policy or a wrong cb.  Thread-safe; changing the policy while another
 * thread is inside a stray-access report of the same mirror gives that
 * report the old or the new policy.
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

typedef struct mmk_arena mmk_arena;

MMK_API mmk_arena *mmk_arena_open(const char *path, size_t reserve, unsigned flags);
MMK_API int    mmk_arena_close(mmk_arena *a);
MMK_API void  *mmk_arena_base(const mmk_arena *a);
MMK_API size_t mmk_arena_size(const mmk_arena *a);
MMK_API size_t mmk_arena_used(const mmk_arena *a);
MMK_API int    mmk_arena_reserve(mmk_arena *a, size_t len);
MMK_API void  *mmk_arena_alloc(mmk_arena *a, size_t len, size_t align);
MMK_API int    mmk_arena_sync(mmk_arena *a);

/* ------------------------------------------------------------------------ */
/* Regions and snapshots                                                     */
/* ------------------------------------------------------------------------ */

typedef struct mmk_region mmk_region;

MMK_API mmk_region *mmk_region_create(size_t size, unsigned flags);
MMK_API mmk_region *mmk_region_snapshot(mmk_region *r, unsigned flags);
MMK_API int    mmk_region_destroy(mmk_region *r);
MMK_API void  *mmk_region_base(mmk_region *r);
MMK_API size_t mmk_region_size(const mmk_region *r);
MMK_API int    mmk_region_read(const mmk_region *r, size_t off, void *buf, size_t len);
MMK_API int    mmk_region_restore(mmk_region *dst, const mmk_region *src);
MMK_API int    mmk_region_prepare_write(mmk_region *r, size_t off, size_t len);
typedef int (*mmk_diff_fn)(size_t off, size_t len, void *ctx);
MMK_API int    mmk_region_diff(const mmk_region *a, const mmk_region *b, mmk_diff_fn fn, void *ctx);
struct mmk_region_stats { size_t pages, private_pages, shared_pages, pool_pages, mappings; };
MMK_API int    mmk_region_stats(const mmk_region *r, struct mmk_region_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_H */
