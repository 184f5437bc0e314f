/* The exec agent of the image init (see image-agent.c). */
#ifndef VIREO_IMAGE_AGENT_H
#define VIREO_IMAGE_AGENT_H
/* Forks the agent (it listens on vsock port 1026); the caller, PID 1, returns at once. No vsock
 * device: the agent exits quietly. */
void image_agent_start(void);
#endif
