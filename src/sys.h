/*
 * sys.h - every system call mmkit makes goes through here.
 *
 * Each wrapper returns 0 (or a non-negative result) on success and a negative
 * errno on failure, and never touches errno's value as seen by its caller
 * except through that return value.  All of them are async-signal-safe (they
 * are thin wrappers over system calls), so the fault handlers may use them.
 *
 * This is also the single place where tests can inject failures: see
 * mmk__sys_inject().
 */
#ifndef MMK_SYS_H
#define MMK_SYS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>

/* Page size, read once (first call is not async-signal-safe-critical: it
 * only reads a cached value after mmk__sys_init ran from a constructor). */
size_t mmk__page_size(void);

/*
 * mmap.  pre: len > 0.  On success *out is the mapping.  With MAP_FIXED the
 * old mapping at addr is replaced atomically (no window where it is unmapped).
 */
int mmk__sys_mmap(void **out, void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* munmap.  pre: addr page-aligned. */
int mmk__sys_munmap(void *addr, size_t len);
/* mprotect.  pre: addr page-aligned. */
int mmk__sys_mprotect(void *addr, size_t len, int prot);
/* madvise. */
int mmk__sys_madvise(void *addr, size_t len, int advice);
/* mremap with flags (MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP). */
int mmk__sys_mremap(void **out, void *old, size_t oldlen, size_t newlen, int flags, void *newaddr);

/* memfd_create(name, MFD_CLOEXEC | extra).  Returns the fd. */
int mmk__sys_memfd(const char *name, unsigned extra);
/* open(2).  Returns the fd. */
int mmk__sys_open(const char *path, int flags, mode_t mode);
int mmk__sys_close(int fd);
int mmk__sys_ftruncate(int fd, off_t len);
int mmk__sys_fallocate(int fd, int mode, off_t off, off_t len);
int mmk__sys_fstat(int fd, struct stat *st);
int mmk__sys_fsync(int fd);
int mmk__sys_msync(void *addr, size_t len, int flags);
/* lseek with SEEK_DATA / SEEK_HOLE and friends; returns the offset. */
off_t mmk__sys_lseek(int fd, off_t off, int whence);
/* fcntl with an integer argument; returns the result. */
int mmk__sys_fcntl(int fd, int cmd, long arg);
/* write(2) of all of buf (retries short writes and EINTR).  0 or -errno. */
int mmk__sys_write_all(int fd, const void *buf, size_t len);

/*
 * Fault injection for tests: make the next `count` calls of the wrapper named
 * `name` ("mmap", "ftruncate", "fallocate", "memfd", ...) fail with -err.
 * count 0 clears.  Not thread-safe against concurrent injection; meant for
 * single-threaded tests.  Returns 0, or -EINVAL for an unknown name.
 */
int mmk__sys_inject(const char *name, int count, int err);

/* ---- additions for arenas (src/arena.c) ---------------------------------- */

#include <signal.h>

/* sigaction(2).  Async-signal-safe; used to ignore SIGXFSZ (so that growing
 * past RLIMIT_FSIZE fails with EFBIG instead of killing) and to restore
 * SIG_DFL before a documented fatal fault. */
int mmk__sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
/* Put sig back to its default action (SIG_DFL).  Async-signal-safe; the
 * fatal paths use it so that re-running a faulting access ends the process
 * with the original signal, whatever handler it had. */
int mmk__sys_sigdefault(int sig);
/* pthread_sigmask(3): the calling thread's signal mask.  Async-signal-safe. */
int mmk__sys_sigmask(int how, const sigset_t *set, sigset_t *old);
/* flock(2) (LOCK_SH, LOCK_EX, LOCK_UN, | LOCK_NB).  Retries EINTR.
 * Injectable as "flock". */
int mmk__sys_flock(int fd, int op);
/* fgetxattr(2).  Returns the value's length. */
int mmk__sys_fgetxattr(int fd, const char *name, void *buf, size_t len);
/* fsetxattr(2). */
int mmk__sys_fsetxattr(int fd, const char *name, const void *buf, size_t len, int flags);
/* unlink(2): a file a failed mmk_arena_open created. */
int mmk__sys_unlink(const char *path);

/* ---- additions for regions (src/region.c) -------------------------------- */

/* read(2) of up to len bytes (retries EINTR); returns the count read. */
ssize_t mmk__sys_read(int fd, void *buf, size_t len);
/* pwrite(2) of all of buf at off (retries short writes and EINTR). */
int mmk__sys_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* ---- additions for the fault router and mirrors (src/fault.c, mirror.c) - */

#include <stdatomic.h>

/* sigaltstack(2).  Injectable as "sigaltstack" (sigaction and sigmask are
 * injectable as "sigaction" and "sigmask" too). */
int mmk__sys_sigaltstack(const stack_t *ss, stack_t *old);
/* Send sig to the calling thread (raise(3)).  Async-signal-safe. */
int mmk__sys_raise(int sig);
/* sched_yield(2). */
void mmk__sys_yield(void);
/* nanosleep(2) for ns nanoseconds (< 1 s); a signal may end it early. */
void mmk__sys_nanosleep(long ns);
/*
 * futex(2) on a process-private word: wait while *word == val (returns 0,
 * or -EAGAIN / -EINTR / -errno; spurious wake-ups happen), wake up to n
 * waiters (returns how many were woken).  Async-signal-safe.
 */
int mmk__sys_futex_wait(atomic_int *word, int val);
int mmk__sys_futex_wake(atomic_int *word, int n);

/* ---- additions for SysV shm over files (src/shm*.c) ---------------------- */

struct flock;
/* openat(2) relative to dirfd; O_CLOEXEC is always added.  Retries EINTR.
 * Returns the fd. */
int mmk__sys_openat(int dirfd, const char *name, int flags, mode_t mode);
/* fstatat(2) (flags: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH). */
int mmk__sys_fstatat(int dirfd, const char *name, struct stat *st, int flags);
/* linkat(2). */
int mmk__sys_linkat(int olddir, const char *oldname, int newdir, const char *newname, int flags);
/* symlinkat(2): newname in dirfd pointing at target (never followed by mmkit). */
int mmk__sys_symlinkat(const char *target, int dirfd, const char *newname);
/* readlinkat(2) of at most len-1 bytes, NUL-terminated.  Returns the length. */
int mmk__sys_readlinkat(int dirfd, const char *name, char *buf, size_t len);
/* unlinkat(2) (flags 0 or AT_REMOVEDIR). */
int mmk__sys_unlinkat(int dirfd, const char *name, int flags);
/* mkdir(2) of a full path. */
int mmk__sys_mkdir(const char *path, mode_t mode);
/* fchownat/fchmodat on a path (used with /proc/self/fd/N of an O_PATH fd,
 * which names exactly that inode). */
int mmk__sys_chown(const char *path, uid_t uid, gid_t gid);
int mmk__sys_chmod(const char *path, mode_t mode);
/* pread(2) of up to len bytes at off (retries EINTR); returns the count. */
ssize_t mmk__sys_pread(int fd, void *buf, size_t len, off_t off);
/* fcntl(2) with a struct flock (F_GETLK, F_SETLK, F_OFD_*).  Retries EINTR. */
int mmk__sys_fcntl_lock(int fd, int cmd, struct flock *fl);
/* getdents64(2) into buf; returns the bytes filled, 0 at the end. */
int mmk__sys_getdents(int fd, void *buf, size_t len);
/* getrandom(2) of len bytes (len <= 256), never blocks for long. */
int mmk__sys_getrandom(void *buf, size_t len);
/* mlock(2) / munlock(2). */
int mmk__sys_mlock(const void *addr, size_t len);
int mmk__sys_munlock(const void *addr, size_t len);
/* fchownat(2) with AT_SYMLINK_NOFOLLOW: the owner of a symlink itself. */
int mmk__sys_lchownat(int dirfd, const char *name, uid_t uid, gid_t gid);
/* renameat(2). */
int mmk__sys_renameat(int olddir, const char *oldname, int newdir, const char *newname);

/* ---- region engine (src/engine.c) ----------------------------------------- */

/* ioctl(2) with a pointer argument (PROCMAP_QUERY on /proc/self/maps).
 * Retries EINTR.  Returns the ioctl's result. */
int mmk__sys_ioctl(int fd, unsigned long request, void *arg);
/* ---- additions for the segment server (src/server/, src/client.c) ------- */
/* Implemented in src/sys_net.c.  Each retries EINTR where a retry is safe. */

#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* socket(2) with SOCK_CLOEXEC added.  Returns the fd. */
int mmk__sys_socket(int domain, int type, int protocol);
int mmk__sys_bind(int fd, const struct sockaddr *addr, socklen_t len);
int mmk__sys_listen(int fd, int backlog);
/* accept4(2) with SOCK_CLOEXEC | SOCK_NONBLOCK.  Returns the fd. */
int mmk__sys_accept(int fd);
/* connect(2); EINTR is reported as -EINTR (the connect goes on). */
int mmk__sys_connect(int fd, const struct sockaddr *addr, socklen_t len);
/* sendmsg/recvmsg; return the byte count.  MSG_NOSIGNAL is always added to
 * sendmsg (a closed peer is -EPIPE, never SIGPIPE). */
ssize_t mmk__sys_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t mmk__sys_recvmsg(int fd, struct msghdr *msg, int flags);
int mmk__sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int mmk__sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
/* poll(2); the ready count (0 on timeout). */
int mmk__sys_poll(struct pollfd *fds, nfds_t n, int timeout_ms);
/* epoll_create1(EPOLL_CLOEXEC), epoll_ctl, epoll_wait (count ready). */
int mmk__sys_epoll_create(void);
int mmk__sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int mmk__sys_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms);
/* signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK).  Returns the fd. */
int mmk__sys_signalfd(const sigset_t *mask);
int mmk__sys_fchmod(int fd, mode_t mode);
int mmk__sys_rename(const char *from, const char *to);
/* (chmod, mkdir and pread: in the SysV shm section above.) */
/* RLIMIT_NOFILE: raise the soft limit to the hard one; returns the limit. */
int mmk__sys_raise_nofile(void);

/* ---- additions for the HTTP feed (src/server/http*.c) -------------------- */
/* Implemented in src/sys_http.c. */

#include <stdint.h>

/* getsockname(2) / getpeername(2). */
int mmk__sys_getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int mmk__sys_getpeername(int fd, struct sockaddr *addr, socklen_t *len);
/* socketpair(2), close-on-exec. */
int mmk__sys_socketpair(int domain, int type, int protocol, int sv[2]);
/* shutdown(2). */
int mmk__sys_shutdown(int fd, int how);
/* send(2) with MSG_NOSIGNAL | MSG_DONTWAIT added: what fits now; the count. */
ssize_t mmk__sys_send_now(int fd, const void *buf, size_t len);
/* recv(2) with MSG_DONTWAIT added: what is there now; the count. */
ssize_t mmk__sys_recv_now(int fd, void *buf, size_t len);
/* CLOCK_MONOTONIC in milliseconds. */
uint64_t mmk__sys_monotonic_ms(void);

#endif

/* ---- additions for fault reports (src/backtrace.c, src/report.c) --------- */

#include <sys/uio.h>

/* pipe2(2) with flags (O_CLOEXEC, O_NONBLOCK).  fds[0] reads, fds[1] writes. */
int mmk__sys_pipe2(int fds[2], int flags);
/* A new child process without running fork handlers (_Fork(3) where glibc
 * has it, else a bare clone(SIGCHLD)): async-signal-safe.  The child must
 * only make system calls and then execve or _exit.  Returns the child's pid
 * in the parent, 0 in the child, or -errno. */
int mmk__sys_fork_bare(void);
/* execve(2); returns only on failure (-errno). */
int mmk__sys_execve(const char *path, char *const argv[], char *const envp[]);
/* dup2(2).  Returns newfd. */
int mmk__sys_dup2(int oldfd, int newfd);
/* waitpid(2), retrying EINTR.  Returns the pid, 0 with WNOHANG, or -errno. */
int mmk__sys_waitpid(int pid, int *status, int options);
/* kill(2). */
int mmk__sys_kill(int pid, int sig);
/* CLOCK_MONOTONIC in nanoseconds. */
long long mmk__sys_now_ns(void);
/* nanosleep(2) for ns nanoseconds (an interrupted sleep just returns). */
void mmk__sys_sleep_ns(long long ns);
/* readlink(2) into buf (NUL-terminated, cut to len - 1).  Returns the length. */
int mmk__sys_readlink(const char *path, char *buf, size_t len);
/* Copy len bytes at the address src of this process into dst, or fail with
 * -EFAULT (never a fault) when they are not readable: process_vm_readv(2)
 * on ourselves.  0 or -errno (-EPERM/-ENOSYS where the call is forbidden). */
int mmk__sys_peek(void *dst, const void *src, size_t len);
/* futex(2) FUTEX_WAIT on *word while it holds val, at most timeout_ns (an
 * interrupted or spurious wake-up just returns).  Process-private.
 * Async-signal-safe.  Wake with mmk__sys_futex_wake. */
void mmk__sys_futex_timedwait(atomic_int *word, int val, long long timeout_ns);
/* sigpending(2): the signals pending for the thread or the process. */
int mmk__sys_sigpending(sigset_t *set);
/* Take sig if it is pending for this thread (sigtimedwait with a zero
 * timeout).  Returns sig, or -EAGAIN if it was not pending. */
int mmk__sys_sigtake(int sig);
/* poll(2) of one fd for events, at most timeout_ms (retries EINTR with the
 * same timeout).  Returns the revents, 0 on timeout, or -errno. */
int mmk__sys_poll1(int fd, short events, int timeout_ms);
