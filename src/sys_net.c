/*
 * sys_net.c - system call wrappers for the segment server and its client
 * library: sockets, epoll, signalfd, and the few file calls persistence
 * needs.  Same contract as sys.c: 0 or a result on success, -errno on
 * failure, errno itself left as the caller had it.
 */
#include "sys.h"

#include <errno.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#define SAVE_ERRNO int saved_errno_ = errno
#define RESULT(ok_expr, res) \
    do { long r_ = (ok_expr) ? (long)(res) : -(long)errno; errno = saved_errno_; return r_; } while (0)

int mmk__sys_socket(int domain, int type, int protocol)
{
    SAVE_ERRNO;
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    RESULT(fd >= 0, fd);
}

int mmk__sys_socketpair(int domain, int type, int protocol, int sv[2])
{
    SAVE_ERRNO;
    int r = socketpair(domain, type | SOCK_CLOEXEC, protocol, sv);
    RESULT(r == 0, 0);
}

int mmk__sys_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    SAVE_ERRNO;
    RESULT(bind(fd, addr, len) == 0, 0);
}

int mmk__sys_listen(int fd, int backlog)
{
    SAVE_ERRNO;
    RESULT(listen(fd, backlog) == 0, 0);
}

int mmk__sys_accept(int fd)
{
    SAVE_ERRNO;
    int c;
    do
        c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    while (c < 0 && errno == EINTR);
    RESULT(c >= 0, c);
}

int mmk__sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    SAVE_ERRNO;
    RESULT(connect(fd, addr, len) == 0, 0);
}

ssize_t mmk__sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = sendmsg(fd, msg, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    RESULT(n >= 0, n);
}

ssize_t mmk__sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
    SAVE_ERRNO;
    ssize_t n;
    do
        n = recvmsg(fd, msg, flags);
    while (n < 0 && errno == EINTR);
    RESULT(n >= 0, n);
}

int mmk__sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    SAVE_ERRNO;
    RESULT(getsockopt(fd, level, name, val, len) == 0, 0);
}

int mmk__sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    SAVE_ERRNO;
    RESULT(setsockopt(fd, level, name, val, len) == 0, 0);
}

int mmk__sys_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    SAVE_ERRNO;
    int r = poll(fds, n, timeout_ms);
    RESULT(r >= 0, r);
}

int mmk__sys_epoll_create(void)
{
    SAVE_ERRNO;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    RESULT(fd >= 0, fd);
}

int mmk__sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    SAVE_ERRNO;
    RESULT(epoll_ctl(epfd, op, fd, ev) == 0, 0);
}

int mmk__sys_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
    SAVE_ERRNO;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    RESULT(n >= 0, n);
}

int mmk__sys_signalfd(const sigset_t *mask)
{
    SAVE_ERRNO;
    int fd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
    RESULT(fd >= 0, fd);
}

int mmk__sys_fchmod(int fd, mode_t mode)
{
    SAVE_ERRNO;
    RESULT(fchmod(fd, mode) == 0, 0);
}

int mmk__sys_rename(const char *from, const char *to)
{
    SAVE_ERRNO;
    RESULT(rename(from, to) == 0, 0);
}

int mmk__sys_raise_nofile(void)
{
    SAVE_ERRNO;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        RESULT(0, 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            RESULT(0, 0);
    }
    RESULT(1, rl.rlim_cur > 1 << 30 ? 1 << 30 : rl.rlim_cur);
}
