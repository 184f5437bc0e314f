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
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(CLINUX_FALLOC_KEEP_SIZE == FALLOC_FL_KEEP_SIZE, "falloc flag");
_Static_assert(CLINUX_FALLOC_PUNCH_HOLE == FALLOC_FL_PUNCH_HOLE, "falloc flag");
_Static_assert(CLINUX_FALLOC_ZERO_RANGE == FALLOC_FL_ZERO_RANGE, "falloc flag");
_Static_assert(CLINUX_EPOLL_IN == EPOLLIN && CLINUX_EPOLL_OUT == EPOLLOUT && CLINUX_EPOLL_ERR == EPOLLERR, "epoll bit");
_Static_assert(CLINUX_EPOLL_HUP == EPOLLHUP && CLINUX_EPOLL_RDHUP == EPOLLRDHUP, "epoll bit");
_Static_assert(CLINUX_EPOLL_ONESHOT == EPOLLONESHOT && CLINUX_EPOLL_ET == (unsigned)EPOLLET, "epoll bit");
_Static_assert(CLINUX_EPOLL_CTL_ADD == EPOLL_CTL_ADD && CLINUX_EPOLL_CTL_DEL == EPOLL_CTL_DEL
               && CLINUX_EPOLL_CTL_MOD == EPOLL_CTL_MOD, "epoll op");

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

int clinux_ofd_lock(int fd, int exclusive) {
    struct flock lock = { .l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    return fcntl(fd, F_OFD_SETLK, &lock) < 0 ? -errno : 0;
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

int clinux_epoll_ctl(int epoll, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event;
    memset(&event, 0, sizeof event);
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epoll, op, fd, &event) < 0 ? -errno : 0;
}

int clinux_epoll_wait_events(int epoll, uint64_t *tokens, uint32_t *masks, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count = epoll_wait(epoll, events, capacity, timeout_ms);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) {
        tokens[i] = events[i].data.u64;
        masks[i] = events[i].events;
    }
    return count;
}

int clinux_tap_open(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &request) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int clinux_interface_up(const char *name) {
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = 0;
    if (ioctl(sock, SIOCGIFFLAGS, &request) < 0) {
        result = -errno;
    } else if (!(request.ifr_flags & IFF_UP)) {
        request.ifr_flags |= IFF_UP;
        if (ioctl(sock, SIOCSIFFLAGS, &request) < 0) result = -errno;
    }
    close(sock);
    return result;
}

int clinux_interface_exists(const char *name) {
    return if_nametoindex(name) != 0;
}

int clinux_accept(int listener) {
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
