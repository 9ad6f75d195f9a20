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

typedef struct mmk_mirror mmk_mirror;

MMK_API mmk_mirror *mmk_mirror_create(size_t size, unsigned flags);
MMK_API int         mmk_mirror_destroy(mmk_mirror *m);
MMK_API void       *mmk_mirror_rw(mmk_mirror *m);
MMK_API const void *mmk_mirror_ro(mmk_mirror *m);
MMK_API size_t      mmk_mirror_size(const mmk_mirror *m);
MMK_API void       *mmk_rw(mmk_mirror *m, const void *p);
MMK_API const void *mmk_ro(mmk_mirror *m, const void *p);
MMK_API int         mmk_mirror_begin_write(mmk_mirror *m);
MMK_API int         mmk_mirror_end_write(mmk_mirror *m);
MMK_API int         mmk_mirror_fd(const mmk_mirror *m);
MMK_API mmk_mirror *mmk_mirror_open_fd(int fd, unsigned flags);

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
