/* The vsock address for the image init and its exec agent: <linux/vm_sockets.h> where the libc has
 * kernel headers, else (musl ships none) the same definitions written out. */
#ifndef VIREO_IMAGE_VSOCK_H
#define VIREO_IMAGE_VSOCK_H
#include <sys/socket.h>
#if __has_include(<linux/vm_sockets.h>)
#include <linux/vm_sockets.h>
#else
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define VMADDR_CID_ANY (-1U)
struct sockaddr_vm {
	sa_family_t svm_family;
	unsigned short svm_reserved1;
	unsigned int svm_port;
	unsigned int svm_cid;
	unsigned char svm_zero[sizeof(struct sockaddr) - sizeof(sa_family_t) - sizeof(unsigned short) - 2 * sizeof(unsigned int)];
};
#endif
#endif
