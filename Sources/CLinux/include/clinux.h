// Linux system calls that Swift's Glibc module does not export (their headers are not in its
// module map, or need _GNU_SOURCE): eventfd, epoll, getrandom, fallocate, thread names. Each
// returns -errno on failure so no Swift runs between the call and reading errno. Only Devices imports this.
#ifndef CLINUX_H
#define CLINUX_H

#include <stddef.h>
#include <stdint.h>

/// A non-blocking, close-on-exec eventfd.
int clinux_eventfd(void);
/// getrandom(2) from the urandom pool, blocking only until it is first seeded.
long clinux_getrandom(void *buffer, size_t length);
/// fallocate(2); `mode` is a combination of the CLINUX_FALLOC_* flags.
int clinux_fallocate(int fd, int mode, int64_t offset, int64_t length);
/// An open-file-description lock on the whole file (F_OFD_SETLK, never waits): exclusive (write)
/// or shared (read). -EAGAIN or -EACCES when another open file holds a conflicting lock.
int clinux_ofd_lock(int fd, int exclusive);
/// An epoll instance, close-on-exec.
int clinux_epoll_create(void);
/// Watches `fd` for input (edge-triggered if asked); `token` comes back from clinux_epoll_wait.
int clinux_epoll_add(int epoll, int fd, int edge_triggered, uint64_t token);
/// Waits for events and stores up to `capacity` tokens; returns how many (or -errno, -EINTR included).
int clinux_epoll_wait(int epoll, uint64_t *tokens, int capacity, int timeout_ms);
/// Names the calling thread (up to 15 characters are kept).
void clinux_set_thread_name(const char *name);

/// epoll_ctl with an explicit event mask (CLINUX_EPOLL_* bits) and op (CLINUX_EPOLL_CTL_*).
int clinux_epoll_ctl(int epoll, int op, int fd, uint32_t events, uint64_t token);
/// Like clinux_epoll_wait, also storing each event mask in `events`.
int clinux_epoll_wait_events(int epoll, uint64_t *tokens, uint32_t *events, int capacity, int timeout_ms);
/// Opens /dev/net/tun (non-blocking, close-on-exec) attached to TAP `name` with IFF_TAP|IFF_NO_PI,
/// creating the interface when it does not exist. Returns the fd or -errno.
int clinux_tap_open(const char *name);
/// Sets IFF_UP on interface `name` unless it is up already. 0 or -errno.
int clinux_interface_up(const char *name);
/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC. The fd or -errno.
int clinux_accept(int listener);
/// 1 when interface `name` exists, 0 when not.
int clinux_interface_exists(const char *name);

enum {
    CLINUX_EPOLL_IN = 0x001,
    CLINUX_EPOLL_OUT = 0x004,
    CLINUX_EPOLL_ERR = 0x008,
    CLINUX_EPOLL_HUP = 0x010,
    CLINUX_EPOLL_RDHUP = 0x2000,
    CLINUX_EPOLL_ONESHOT = 1u << 30,
    CLINUX_EPOLL_ET = 1u << 31,
    CLINUX_EPOLL_CTL_ADD = 1,
    CLINUX_EPOLL_CTL_DEL = 2,
    CLINUX_EPOLL_CTL_MOD = 3,
};

enum {
    CLINUX_FALLOC_KEEP_SIZE = 0x01,
    CLINUX_FALLOC_PUNCH_HOLE = 0x02,
    CLINUX_FALLOC_ZERO_RANGE = 0x10,
};

#endif
