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
/// An epoll instance, close-on-exec.
int clinux_epoll_create(void);
/// Watches `fd` for input (edge-triggered if asked); `token` comes back from clinux_epoll_wait.
int clinux_epoll_add(int epoll, int fd, int edge_triggered, uint64_t token);
/// Waits for events and stores up to `capacity` tokens; returns how many (or -errno, -EINTR included).
int clinux_epoll_wait(int epoll, uint64_t *tokens, int capacity, int timeout_ms);
/// Names the calling thread (up to 15 characters are kept).
void clinux_set_thread_name(const char *name);

enum {
    CLINUX_FALLOC_KEEP_SIZE = 0x01,
    CLINUX_FALLOC_PUNCH_HOLE = 0x02,
    CLINUX_FALLOC_ZERO_RANGE = 0x10,
};

#endif
