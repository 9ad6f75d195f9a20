/*
 * sys.c - thin, async-signal-safe wrappers over the system calls mmkit uses.
 *
 * Each wrapper saves and restores errno, so that a fault handler which calls
 * them leaves the interrupted code's errno untouched.
 */
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static size_t page_size_cached;

__attribute__((constructor)) static void sys_init(void)
{
    page_size_cached = (size_t)sysconf(_SC_PAGESIZE);
}

size_t mmk__page_size(void)
{
    if (!page_size_cached)
        page_size_cached = (size_t)sysconf(_SC_PAGESIZE);
    return page_size_cached;
}

/* ---- fault injection ---------------------------------------------------- */

enum { INJ_MMAP, INJ_MUNMAP, INJ_MPROTECT, INJ_MREMAP, INJ_MEMFD, INJ_OPEN,
       INJ_FTRUNCATE, INJ_FALLOCATE, INJ_FSYNC, INJ_WRITE, INJ_SIGACTION,
       INJ_SIGALTSTACK, INJ_SIGMASK, INJ_FLOCK, INJ_COUNT };

static const char *const inj_names[INJ_COUNT] = {
    "mmap", "munmap", "mprotect", "mremap", "memfd", "open",
    "ftruncate", "fallocate", "fsync", "write", "sigaction",
    "sigaltstack", "sigmask", "flock",
};

static struct { atomic_int count; int err; } inj[INJ_COUNT];

int mmk__sys_inject(const char *name, int count, int err)
{
    for (int i = 0; i < INJ_COUNT; i++) {
        if (strcmp(name, inj_names[i]) == 0) {
            inj[i].err = err < 0 ? -err : err;
            atomic_store(&inj[i].count, count);
            return 0;
        }
    }
    return -EINVAL;
}

/* Returns a negative errno if an injected failure is due for op. */
static inline int injected(int op)
{
    if (__builtin_expect(atomic_load_explicit(&inj[op].count, memory_order_relaxed) <= 0, 1))
        return 0;
    if (atomic_fetch_sub(&inj[op].count, 1) > 0)
        return -inj[op].err;
    return 0;
}

/* ---- wrappers ------------------------------------------------------------ */

#define SAVE_ERRNO int saved_errno_ = errno
#define RESULT(ok_expr, res) \
    do { int r_ = (ok_expr) ? (res) : -errno; errno = saved_errno_; return r_; } while (0)

int mmk__sys_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    int e = injected(INJ_MMAP);
    if (e)
        return e;
    SAVE_ERRNO;
    void *p = mmap(addr, len, prot, flags, fd, off);
    if (p == MAP_FAILED) {
        int r = -errno;
        errno = saved_errno_;
        return r;
    }
    *out = p;
    errno = saved_errno_;
    return 0;
}

int mmk__sys_munmap(void *addr, size_t len)
{
    int e = injected(INJ_MUNMAP);
    if (e)
        return e;
    SAVE_ERRNO;
    RESULT(munmap(addr, len) == 0, 0);
}

int mmk__sys_mprotect(void *addr, size_t len, int prot)
{
    int e = injected(INJ_MPROTECT);
    if (e)
        return e;
    SAVE_ERRNO;
    RESULT(mprotect(addr, len, prot) == 0, 0);
}

int mmk__sys_madvise(void *addr, size_t len, int advice)
{
    SAVE_ERRNO;
    RESULT(madvise(addr, len, advice) == 0, 0);
}

int mmk__sys_mremap(void **out, void *old, size_t oldlen, size_t newlen, int flags, void *newaddr)
{
    int e = injected(INJ_MREMAP);
    if (e)
        return e;
    SAVE_ERRNO;
    void *p = mremap(old, oldlen, newlen, flags, newaddr);
    if (p == MAP_FAILED) {
        int r = -errno;
        errno = saved_errno_;
        return r;
    }
    *out = p;
    errno = saved_errno_;
    return 0;
}

int mmk__sys_memfd(const char *name, unsigned extra)
{
    int e = injected(INJ_MEMFD);
    if (e)
        return e;
    SAVE_ERRNO;
    int fd = memfd_create(name, MFD_CLOEXEC | extra);
    RESULT(fd >= 0, fd);
}

int mmk__sys_open(const char *path, int flags, mode_t mode)
{
    int e = injected(INJ_OPEN);
    if (e)
        return e;
    SAVE_ERRNO;
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    RESULT(fd >= 0, fd);
}

int mmk__sys_close(int fd)
{
    SAVE_ERRNO;
    /* On Linux the descriptor is released even when close reports EINTR. */
    int r = close(fd);
    RESULT(r == 0 || errno == EINTR, 0);
}

int mmk__sys_ftruncate(int fd, off_t len)
{
    int e = injected(INJ_FTRUNCATE);
    if (e)
        return e;
    SAVE_ERRNO;
    int r;
    do
        r = ftruncate(fd, len);
    while (r < 0 && errno == EINTR);
    RESULT(r == 0, 0);
}

int mmk__sys_fallocate(int fd, int mode, off_t off, off_t len)
{
    int e = injected(INJ_FALLOCATE);
    if (e)
        return e;
    SAVE_ERRNO;
    int r;
    do
        r = fallocate(fd, mode, off, len);
    while (r < 0 && errno == EINTR);
    RESULT(r == 0, 0);
}

int mmk__sys_fstat(int fd, struct stat *st)
{
    SAVE_ERRNO;
    RESULT(fstat(fd, st) == 0, 0);
}

int mmk__sys_fsync(int fd)
{
    int e = injected(INJ_FSYNC);
    if (e)
        return e;
    SAVE_ERRNO;
    RESULT(fsync(fd) == 0, 0);
}

int mmk__sys_msync(void *addr, size_t len, int flags)
{
    SAVE_ERRNO;
    RESULT(msync(addr, len, flags) == 0, 0);
}

off_t mmk__sys_lseek(int fd, off_t off, int whence)
{
    SAVE_ERRNO;
    off_t r = lseek(fd, off, whence);
    if (r < 0)
        r = -errno;
    errno = saved_errno_;
    return r;
}

int mmk__sys_fcntl(int fd, int cmd, long arg)
{
    SAVE_ERRNO;
    int r = fcntl(fd, cmd, arg);
    RESULT(r >= 0, r);
}

/* Write all of buf, at off (off >= 0: pwrite) or at the file position. */
static int write_fully(int fd, const void *buf, size_t len, off_t off)
{
    int e = injected(INJ_WRITE);
    if (e)
        return e;
    SAVE_ERRNO;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = off >= 0 ? pwrite(fd, p, len, off) : write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            errno = saved_errno_;
            return r;
        }
        p += n;
        len -= (size_t)n;
        if (off >= 0)
            off += n;
    }
    errno = saved_errno_;
    return 0;
}

int mmk__sys_write_all(int fd, const void *buf, size_t len)
{
    return write_fully(fd, buf, len, -1);
}

int mmk__sys_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    return off < 0 ? -EINVAL : write_fully(fd, buf, len, off);
}

/* ---- additions for arenas ------------------------------------------------ */

int mmk__sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    int e = injected(INJ_SIGACTION);
    if (e)
        return e;
    SAVE_ERRNO;
    RESULT(sigaction(sig, act, old) == 0, 0);
}

int mmk__sys_sigdefault(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    return mmk__sys_sigaction(sig, &dfl, NULL);
}

int mmk__sys_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    int e = injected(INJ_SIGMASK);
    if (e)
        return e;
    /* pthread_sigmask returns the error number instead of setting errno. */
    int r = pthread_sigmask(how, set, old);
    return -r;
}

int mmk__sys_flock(int fd, int op)
{
    int e = injected(INJ_FLOCK);
    if (e)
        return e;
    SAVE_ERRNO;
    int r;
    do
        r = flock(fd, op);
    while (r < 0 && errno == EINTR);
    RESULT(r == 0, 0);
}

int mmk__sys_fgetxattr(int fd, const char *name, void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n = fgetxattr(fd, name, buf, len);
    RESULT(n >= 0, (int)n);
}

int mmk__sys_fsetxattr(int fd, const char *name, const void *buf, size_t len, int flags)
{
    SAVE_ERRNO;
    RESULT(fsetxattr(fd, name, buf, len, flags) == 0, 0);
}

int mmk__sys_unlink(const char *path)
{
    SAVE_ERRNO;
    RESULT(unlink(path) == 0, 0);
}

ssize_t mmk__sys_read(int fd, void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        n = -errno;
    errno = saved_errno_;
    return n;
}

/* ---- additions for the fault router and mirrors ------------------------- */

int mmk__sys_sigaltstack(const stack_t *ss, stack_t *old)
{
    int e = injected(INJ_SIGALTSTACK);
    if (e)
        return e;
    SAVE_ERRNO;
    RESULT(sigaltstack(ss, old) == 0, 0);
}

int mmk__sys_raise(int sig)
{
    SAVE_ERRNO;
    RESULT(raise(sig) == 0, 0);
}

void mmk__sys_yield(void)
{
    SAVE_ERRNO;
    sched_yield();
    errno = saved_errno_;
}

void mmk__sys_nanosleep(long ns)
{
    SAVE_ERRNO;
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
    errno = saved_errno_;
}

int mmk__sys_futex_wait(atomic_int *word, int val)
{
    SAVE_ERRNO;
    long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
    RESULT(r == 0, 0);
}

int mmk__sys_futex_wake(atomic_int *word, int n)
{
    SAVE_ERRNO;
    long r = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    RESULT(r >= 0, (int)r);
}

/* ---- additions for SysV shm over files ----------------------------------- */

#include <dirent.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/syscall.h>

int mmk__sys_openat(int dirfd, const char *name, int flags, mode_t mode)
{
    int e = injected(INJ_OPEN);
    if (e)
        return e;
    SAVE_ERRNO;
    int fd;
    do
        fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    RESULT(fd >= 0, fd);
}

int mmk__sys_fstatat(int dirfd, const char *name, struct stat *st, int flags)
{
    SAVE_ERRNO;
    RESULT(fstatat(dirfd, name, st, flags) == 0, 0);
}

int mmk__sys_linkat(int olddir, const char *oldname, int newdir, const char *newname, int flags)
{
    SAVE_ERRNO;
    RESULT(linkat(olddir, oldname, newdir, newname, flags) == 0, 0);
}

int mmk__sys_symlinkat(const char *target, int dirfd, const char *newname)
{
    SAVE_ERRNO;
    RESULT(symlinkat(target, dirfd, newname) == 0, 0);
}

int mmk__sys_readlinkat(int dirfd, const char *name, char *buf, size_t len)
{
    if (len == 0)
        return -EINVAL;
    SAVE_ERRNO;
    ssize_t n = readlinkat(dirfd, name, buf, len - 1);
    if (n >= 0)
        buf[n] = '\0';
    RESULT(n >= 0, (int)n);
}

int mmk__sys_unlinkat(int dirfd, const char *name, int flags)
{
    SAVE_ERRNO;
    RESULT(unlinkat(dirfd, name, flags) == 0, 0);
}

int mmk__sys_mkdir(const char *path, mode_t mode)
{
    SAVE_ERRNO;
    RESULT(mkdir(path, mode) == 0, 0);
}

int mmk__sys_chown(const char *path, uid_t uid, gid_t gid)
{
    SAVE_ERRNO;
    RESULT(chown(path, uid, gid) == 0, 0);
}

int mmk__sys_chmod(const char *path, mode_t mode)
{
    SAVE_ERRNO;
    RESULT(chmod(path, mode) == 0, 0);
}

ssize_t mmk__sys_pread(int fd, void *buf, size_t len, off_t off)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        n = -errno;
    errno = saved_errno_;
    return n;
}

int mmk__sys_fcntl_lock(int fd, int cmd, struct flock *fl)
{
    SAVE_ERRNO;
    int r;
    do
        r = fcntl(fd, cmd, fl);
    while (r < 0 && errno == EINTR);
    RESULT(r >= 0, r);
}

int mmk__sys_getdents(int fd, void *buf, size_t len)
{
    SAVE_ERRNO;
    long n = syscall(SYS_getdents64, fd, buf, len);
    RESULT(n >= 0, (int)n);
}

int mmk__sys_getrandom(void *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = getrandom(buf, len, 0);
    while (n < 0 && errno == EINTR);
    RESULT(n == (ssize_t)len, 0);
}

int mmk__sys_mlock(const void *addr, size_t len)
{
    SAVE_ERRNO;
    RESULT(mlock(addr, len) == 0, 0);
}

int mmk__sys_munlock(const void *addr, size_t len)
{
    SAVE_ERRNO;
    RESULT(munlock(addr, len) == 0, 0);
}

int mmk__sys_renameat(int olddir, const char *oldname, int newdir, const char *newname)
{
    SAVE_ERRNO;
    RESULT(renameat(olddir, oldname, newdir, newname) == 0, 0);
}

int mmk__sys_lchownat(int dirfd, const char *name, uid_t uid, gid_t gid)
{
    SAVE_ERRNO;
    RESULT(fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0, 0);
}

/* ---- region engine ---------------------------------------------------------- */

#include <sys/ioctl.h>

int mmk__sys_ioctl(int fd, unsigned long request, void *arg)
{
    SAVE_ERRNO;
    int r;
    do
        r = ioctl(fd, request, arg);
    while (r < 0 && errno == EINTR);
    RESULT(r >= 0, r);
}

/* ---- additions for fault reports ----------------------------------------- */

#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

int mmk__sys_pipe2(int fds[2], int flags)
{
    SAVE_ERRNO;
    RESULT(pipe2(fds, flags) == 0, 0);
}

int mmk__sys_fork_bare(void)
{
    SAVE_ERRNO;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    pid_t pid = _Fork();
#else
    pid_t pid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
#endif
    RESULT(pid >= 0, (int)pid);
}

int mmk__sys_execve(const char *path, char *const argv[], char *const envp[])
{
    SAVE_ERRNO;
    execve(path, argv, envp);
    int r = -errno;
    errno = saved_errno_;
    return r;
}

int mmk__sys_dup2(int oldfd, int newfd)
{
    SAVE_ERRNO;
    int r = dup2(oldfd, newfd);
    RESULT(r >= 0, r);
}

int mmk__sys_waitpid(int pid, int *status, int options)
{
    SAVE_ERRNO;
    pid_t r;
    do
        r = waitpid((pid_t)pid, status, options);
    while (r < 0 && errno == EINTR);
    RESULT(r >= 0, (int)r);
}

int mmk__sys_kill(int pid, int sig)
{
    SAVE_ERRNO;
    RESULT(kill((pid_t)pid, sig) == 0, 0);
}

long long mmk__sys_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void mmk__sys_sleep_ns(long long ns)
{
    SAVE_ERRNO;
    struct timespec ts = { (time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL) };
    nanosleep(&ts, NULL);
    errno = saved_errno_;
}

int mmk__sys_readlink(const char *path, char *buf, size_t len)
{
    SAVE_ERRNO;
    ssize_t n = len > 0 ? readlink(path, buf, len - 1) : -1;
    if (n >= 0)
        buf[n] = '\0';
    RESULT(n >= 0, (int)n);
}

int mmk__sys_peek(void *dst, const void *src, size_t len)
{
    SAVE_ERRNO;
    struct iovec local = { dst, len }, remote = { (void *)(uintptr_t)src, len };
    ssize_t n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (n >= 0 && (size_t)n != len) {
        errno = saved_errno_;
        return -EFAULT;
    }
    RESULT(n >= 0, 0);
}

#include <linux/futex.h>

void mmk__sys_futex_timedwait(atomic_int *word, int val, long long timeout_ns)
{
    SAVE_ERRNO;
    if (timeout_ns < 0)
        timeout_ns = 0;
    struct timespec ts = { (time_t)(timeout_ns / 1000000000LL), (long)(timeout_ns % 1000000000LL) };
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
    errno = saved_errno_;
}

int mmk__sys_sigpending(sigset_t *set)
{
    SAVE_ERRNO;
    RESULT(sigpending(set) == 0, 0);
}

int mmk__sys_sigtake(int sig)
{
    SAVE_ERRNO;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    struct timespec zero = { 0, 0 };
    int r = sigtimedwait(&one, NULL, &zero);
    RESULT(r >= 0, r);
}

#include <poll.h>

int mmk__sys_poll1(int fd, short events, int timeout_ms)
{
    SAVE_ERRNO;
    struct pollfd p = { fd, events, 0 };
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    RESULT(r >= 0, r > 0 ? p.revents : 0);
}
