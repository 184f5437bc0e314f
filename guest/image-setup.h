/* What the host asks the image init to set up around the program (see image-setup.c). */
#ifndef VIREO_IMAGE_SETUP_H
#define VIREO_IMAGE_SETUP_H
#include <stddef.h>

/* Loopback up; with `address` ("A.B.C.D/N"), eth0 with that address, a default route via
 * `gateway`, and /etc/resolv.conf naming `dns`. Problems are reported, never fatal. */
void image_setup_network(const char *address, const char *gateway, const char *dns);
/* `size` is "ROWS COLUMNS": the console becomes a cooked terminal of that size (-t). */
void image_setup_terminal(const char *size);
/* Each record is "RESOURCE SOFT HARD" (RLIMIT_* number, RLIM_INFINITY as all ones); returns 0, or
 * -1 after reporting a limit the kernel refused. */
int image_apply_limits(char **records);
#endif
