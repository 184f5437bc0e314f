/* A pod's containers in one VM (see image-pod.c). */
#ifndef VIREO_IMAGE_POD_H
#define VIREO_IMAGE_POD_H
#include <sys/types.h>
/* 1 when `slot` is a hot-attach slot's id ("vireo-slot-N", N < 100). */
int pod_valid_slot(const char *slot);
/* In the container's first process: a private mount namespace, the slot's disk mounted and made
 * the root, /proc, /sys and /dev mounted in it. 0, or -1 after a message on stderr. */
int pod_enter_new_root(const char *slot);
/* Drops the capabilities a container does not get (its bounding set: what root has after exec). */
void pod_drop_capabilities(void);
/* A new PID namespace for the next fork, where the kernel has them (1 if so, 0 if not). */
int pod_new_pid_namespace(void);
/* Joins the PID namespace of `pid` for the next fork (nothing where the kernel has none). */
void pod_join_pid_namespace(pid_t pid);
/* The running container's first process by slot (a pid file in the initramfs), for exec into it. */
void pod_record(const char *slot, pid_t pid);
pid_t pod_lookup(const char *slot);
void pod_forget(const char *slot);
#endif
