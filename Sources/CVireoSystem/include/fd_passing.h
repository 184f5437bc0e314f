// Descriptor passing over a Unix socket (SCM_RIGHTS): one message of bytes plus a bounded number of
// descriptors, each way. The daemon's warm pool hands a VM's files to a pre-started VMM with it
// (WarmPoolHandoff, WarmPoolMember); the cmsghdr layout lives here once, behind two checked calls.
#ifndef CSYS_FD_PASSING_H
#define CSYS_FD_PASSING_H

#include <stddef.h>
#include <sys/types.h>

#define CSYS_FD_PASSING_MAX_FDS 16
/// The most descriptors one message may carry either way.
static const int CSYS_FD_PASSING_MAX = CSYS_FD_PASSING_MAX_FDS;

/// Sends `length` bytes (at least 1) and `count` descriptors (0 … CSYS_FD_PASSING_MAX) as one
/// message on `socket`, without SIGPIPE, retrying EINTR. Returns the bytes sent (all of them) or
/// -errno (-EINVAL for a bad count, -EMSGSIZE when only part of the bytes went).
ssize_t csys_send_fds(int socket, const void *data, size_t length, const int *fds, int count);

/// Receives one message: up to `capacity` bytes into `data` and up to `max_fds` (at most
/// CSYS_FD_PASSING_MAX) descriptors, close-on-exec, into `fds`, their number in `*fd_count`;
/// retries EINTR. A message whose bytes or descriptors do not fit is refused whole: every
/// descriptor it carried is closed and the result is -EMSGSIZE. Returns the bytes received (0 at
/// end of file, with no descriptor) or -errno.
ssize_t csys_receive_fds(int socket, void *data, size_t capacity, int *fds, int max_fds, int *fd_count);

#endif
