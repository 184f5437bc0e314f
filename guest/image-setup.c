/*
 * The image init's host-requested setup, kept apart from its boot/run flow (image-init.c):
 * network (fixed addresses the host gave passt: a few ioctls, no DHCP exchange, because every
 * guest syscall is slow on PVM hosts), the program's terminal for -t, and --ulimit resource limits.
 */
#define _GNU_SOURCE
#include "image-setup.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static void report(const char *what, const char *name)
{
	dprintf(2, "vireo-init: %s %s: %s\n", what, name, strerror(errno));
}

static int interface_up(int fd, const char *name)
{
	struct ifreq request;
	memset(&request, 0, sizeof request);
	strncpy(request.ifr_name, name, IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFFLAGS, &request) != 0)
		return -1;
	request.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(fd, SIOCSIFFLAGS, &request);
}

static int set_address(int fd, const char *name, unsigned long request_code, struct in_addr address)
{
	struct ifreq request;
	memset(&request, 0, sizeof request);
	strncpy(request.ifr_name, name, IFNAMSIZ - 1);
	struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
	in->sin_family = AF_INET;
	in->sin_addr = address;
	return ioctl(fd, request_code, &request);
}

void image_setup_network(const char *address, const char *gateway, const char *dns)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		report("socket", "AF_INET");
		return;
	}
	if (interface_up(fd, "lo") != 0)
		report("bring up", "lo");
	if (!address || !*address) {
		close(fd);
		return;
	}
	char text[32];
	snprintf(text, sizeof text, "%s", address);
	char *slash = strchr(text, '/');
	int prefix = slash ? atoi(slash + 1) : 24;
	if (slash)
		*slash = 0;
	struct in_addr ip, mask, via;
	if (inet_pton(AF_INET, text, &ip) != 1 || prefix < 1 || prefix > 32 || !gateway || inet_pton(AF_INET, gateway, &via) != 1) {
		dprintf(2, "vireo-init: bad network config '%s' via '%s'\n", address, gateway ? gateway : "");
		close(fd);
		return;
	}
	mask.s_addr = htonl(0xffffffffu << (32 - prefix));
	/* virtio-net is built in and probed before init runs; allow a slow probe anyway. */
	for (int tries = 0; if_nametoindex("eth0") == 0 && tries < 100; tries++)
		usleep(50000);
	if (set_address(fd, "eth0", SIOCSIFADDR, ip) != 0 || set_address(fd, "eth0", SIOCSIFNETMASK, mask) != 0 ||
	    interface_up(fd, "eth0") != 0) {
		report("configure", "eth0");
		close(fd);
		return;
	}
	struct rtentry route;
	memset(&route, 0, sizeof route);
	((struct sockaddr_in *)&route.rt_dst)->sin_family = AF_INET;
	((struct sockaddr_in *)&route.rt_genmask)->sin_family = AF_INET;
	struct sockaddr_in *gw = (struct sockaddr_in *)&route.rt_gateway;
	gw->sin_family = AF_INET;
	gw->sin_addr = via;
	route.rt_flags = RTF_UP | RTF_GATEWAY;
	if (ioctl(fd, SIOCADDRT, &route) != 0 && errno != EEXIST)
		report("add the default route via", gateway);
	close(fd);
	/* passt learns the guest's MAC from the guest's first frame and until then addresses inbound
	 * connections to 00:00:00:00:00:00, which the NIC drops: one empty datagram to the gateway's
	 * discard port (its ARP request is the frame that matters) makes published ports work at once. */
	int hello = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in discard = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr = via};
	if (hello < 0 || sendto(hello, "", 0, 0, (struct sockaddr *)&discard, sizeof discard) < 0)
		report("greet the gateway", gateway);
	if (hello >= 0)
		close(hello);
	if (dns && *dns) {
		/* As Docker does, the VM's resolv.conf is the runtime's: replace the image's (even a link). */
		mkdir("/etc", 0755);
		unlink("/etc/resolv.conf");
		int file = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (file < 0 || dprintf(file, "nameserver %s\n", dns) < 0)
			report("write", "/etc/resolv.conf");
		if (file >= 0)
			close(file);
	}
}

void image_setup_terminal(const char *size)
{
	struct termios mode;
	if (tcgetattr(0, &mode) == 0) {
		/* A cooked terminal, as a login gives: the host's terminal is raw, so echo, line editing,
		 * ^C → SIGINT and \n → \r\n all happen here. */
		mode.c_iflag |= ICRNL;
		mode.c_oflag |= OPOST | ONLCR;
		mode.c_lflag |= ISIG | ICANON | ECHO | ECHOE | ECHOK | IEXTEN;
		tcsetattr(0, TCSANOW, &mode);
	}
	unsigned rows = 0, columns = 0;
	if (size && sscanf(size, "%u %u", &rows, &columns) == 2 && rows > 0 && rows < 65536 && columns > 0 && columns < 65536) {
		struct winsize window = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
		if (ioctl(0, TIOCSWINSZ, &window) != 0)
			report("set the size of", "the console");
	}
}

int image_apply_limits(char **records)
{
	for (size_t i = 0; records && records[i]; i++) {
		int resource;
		unsigned long long soft, hard;
		if (sscanf(records[i], "%d %llu %llu", &resource, &soft, &hard) != 3 || resource < 0 || resource >= RLIM_NLIMITS) {
			dprintf(2, "vireo-init: bad resource limit record '%s'\n", records[i]);
			return -1;
		}
		struct rlimit limit = {.rlim_cur = (rlim_t)soft, .rlim_max = (rlim_t)hard};
		if (setrlimit(resource, &limit) != 0) {
			dprintf(2, "vireo-init: cannot set resource limit %d to %llu:%llu: %s\n", resource, soft, hard, strerror(errno));
			return -1;
		}
	}
	return 0;
}
