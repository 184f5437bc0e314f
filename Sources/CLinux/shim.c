// Out of line so _GNU_SOURCE stays here and out of the Swift importer's view of libc.
#define _GNU_SOURCE 1
#include "clinux.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>

_Static_assert(CLINUX_FALLOC_KEEP_SIZE == FALLOC_FL_KEEP_SIZE, "falloc flag");
_Static_assert(CLINUX_FALLOC_PUNCH_HOLE == FALLOC_FL_PUNCH_HOLE, "falloc flag");
_Static_assert(CLINUX_FALLOC_ZERO_RANGE == FALLOC_FL_ZERO_RANGE, "falloc flag");

int clinux_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

long clinux_getrandom(void *buffer, size_t length) {
    ssize_t r = getrandom(buffer, length, 0);
    return r < 0 ? -errno : (long)r;
}

int clinux_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length) < 0 ? -errno : 0;
}

int clinux_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int clinux_epoll_add(int epoll, int fd, int edge_triggered, uint64_t token) {
    struct epoll_event event;
    memset(&event, 0, sizeof event);
    event.events = EPOLLIN | (edge_triggered ? EPOLLET : 0);
    event.data.u64 = token;
    return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) < 0 ? -errno : 0;
}

int clinux_epoll_wait(int epoll, uint64_t *tokens, int capacity, int timeout_ms) {
    struct epoll_event events[16];
    if (capacity > 16) capacity = 16;
    int count = epoll_wait(epoll, events, capacity, timeout_ms);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) tokens[i] = events[i].data.u64;
    return count;
}

void clinux_set_thread_name(const char *name) {
    char short_name[16];
    strncpy(short_name, name, sizeof short_name - 1);
    short_name[sizeof short_name - 1] = 0;
    pthread_setname_np(pthread_self(), short_name);
}
