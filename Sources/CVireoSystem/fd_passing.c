// Bodies for fd_passing.h.
#define _GNU_SOURCE
#include "fd_passing.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Room for the most descriptors a message may carry, aligned for struct cmsghdr.
union csys_fd_control {
    struct cmsghdr header;
    char bytes[CMSG_SPACE(sizeof(int) * CSYS_FD_PASSING_MAX_FDS)];
};

ssize_t csys_send_fds(int socket, const void *data, size_t length, const int *fds, int count) {
    if (length == 0 || count < 0 || count > CSYS_FD_PASSING_MAX || (count > 0 && fds == NULL)) return -EINVAL;
    union csys_fd_control control;
    memset(&control, 0, sizeof(control));
    struct iovec vector = { .iov_base = (void *)data, .iov_len = length };
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1 };
    if (count > 0) {
        message.msg_control = control.bytes;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * (size_t)count);
    }
    ssize_t sent;
    do {
        sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return -errno;
    return (size_t)sent == length ? sent : -EMSGSIZE;
}

// Closes every descriptor a received control buffer carries.
static void close_received(struct msghdr *message) {
    for (struct cmsghdr *header = CMSG_FIRSTHDR(message); header != NULL; header = CMSG_NXTHDR(message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS || header->cmsg_len < CMSG_LEN(0)) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *cursor = CMSG_DATA(header);
        for (size_t index = 0; index < count; index++) {
            int fd;
            memcpy(&fd, cursor + index * sizeof(int), sizeof(int));
            close(fd);
        }
    }
}

ssize_t csys_receive_fds(int socket, void *data, size_t capacity, int *fds, int max_fds, int *fd_count) {
    if (fd_count == NULL || max_fds < 0 || max_fds > CSYS_FD_PASSING_MAX || (max_fds > 0 && fds == NULL)) return -EINVAL;
    *fd_count = 0;
    union csys_fd_control control;
    memset(&control, 0, sizeof(control));
    struct iovec vector = { .iov_base = data, .iov_len = capacity };
    // The whole buffer: descriptors beyond max_fds are then seen (and closed), not silently dropped.
    struct msghdr message = { .msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.bytes,
                              .msg_controllen = sizeof(control.bytes) };
    ssize_t received;
    do {
        received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    } while (received < 0 && errno == EINTR);
    if (received < 0) return -errno;
    if (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        close_received(&message);
        return -EMSGSIZE;
    }
    int found = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if ((size_t)found + count > (size_t)max_fds) {
            close_received(&message);
            *fd_count = 0;
            return -EMSGSIZE;
        }
        memcpy(fds + found, CMSG_DATA(header), count * sizeof(int));
        found += (int)count;
    }
    *fd_count = found;
    return received;
}
