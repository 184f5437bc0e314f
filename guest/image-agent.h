/* The exec agent of the image init (see image-agent.c). */
#ifndef VIREO_IMAGE_AGENT_H
#define VIREO_IMAGE_AGENT_H
#include <sys/types.h>
/* A non-blocking listening socket on vsock port 1026, or -1 (no vsock device). */
int image_agent_listen(void);
/* Accepts one connection and forks its handler (which runs one process; see image-agent.c). */
void image_agent_accept(int listener, pid_t workload);
#endif
