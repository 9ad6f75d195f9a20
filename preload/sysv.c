/*
 * sysv.c - libmmkit-sysv.so, the LD_PRELOAD shim: an unmodified program's
 * shmget/shmat/shmdt/shmctl, and syscall(SYS_shmget, ...) and its siblings
 * through libc's syscall(3), become mmkit's file-backed segments.  Every
 * other system call number passes through to libc untouched.
 *
 * Only interposition lives here: each function converts mmkit's -errno
 * convention to the libc one (-1 and errno) and calls the public API.
 */
#include "mmkit.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#ifndef IPC_64
#define IPC_64 0x0100
#endif

/* mmkit's own codes mean nothing to a SysV program: a damaged or forged
 * store entry is an invalid segment to it. */
static long fail(int r)
{
    errno = r <= -MMK_EBASE ? EINVAL : -r;
    return -1;
}

EXPORT int shmget(key_t key, size_t size, int shmflg)
{
    int r = mmk_shmget(key, size, shmflg);
    return r < 0 ? (int)fail(r) : r;
}

EXPORT void *shmat(int shmid, const void *shmaddr, int shmflg)
{
    void *p;
    int r = mmk_shmat(shmid, shmaddr, shmflg, &p);
    if (r < 0) {
        fail(r);
        return (void *)-1;
    }
    return p;
}

EXPORT int shmdt(const void *shmaddr)
{
    int r = mmk_shmdt(shmaddr);
    return r < 0 ? (int)fail(r) : r;
}

EXPORT int shmctl(int shmid, int cmd, struct shmid_ds *buf)
{
    int r = mmk_shmctl(shmid, cmd & ~IPC_64, buf);
    return r < 0 ? (int)fail(r) : r;
}

typedef long (*syscall_fn)(long, ...);
static _Atomic(syscall_fn) next_syscall;

EXPORT long syscall(long nr, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    switch (nr) {
    case SYS_shmget:
        return shmget((key_t)a[0], (size_t)a[1], (int)a[2]);
    case SYS_shmat: {
        /* The raw system call returns the address (or -1 and errno). */
        void *p = shmat((int)a[0], (const void *)a[1], (int)a[2]);
        return (long)p;
    }
    case SYS_shmdt:
        return shmdt((const void *)a[0]);
    case SYS_shmctl:
        return shmctl((int)a[0], (int)a[1], (struct shmid_ds *)a[2]);
    default:
        break;
    }
    syscall_fn fn = atomic_load_explicit(&next_syscall, memory_order_acquire);
    if (!fn) {
        fn = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
        if (!fn) {
            errno = ENOSYS;
            return -1;
        }
        atomic_store_explicit(&next_syscall, fn, memory_order_release);
    }
    return fn(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
