/*
 * vireo-init: PID 1 of Vireo's Linux test guest (a static binary, /init in the initramfs).
 *
 * It mounts the pseudo-filesystems, prints `VIREO-INIT-OK cpus=N`, runs the device checks the
 * kernel command line asks for (`vireo.test=rng,blk,ext4,net,tap,vsock,balloon`), optionally hands the
 * serial console to a busybox shell (`vireo.shell`), prints `VIREO-INIT-DONE` and resets the
 * machine: without ACPI a reset is how a Vireo guest ends (the VMM exits 0).
 *
 * Every result is one console line starting `VIREO-` that the host-side tests parse. Checks run
 * in this one process with large buffers: on PVM hosts every system call is a page fault plus
 * emulated kernel code, and a fork+exec costs seconds (docs/hosts.md).
 *
 * Also serves as busybox udhcpc's lease script (`udhcpc -s /init`): configures eth0 and records
 * the lease in /tmp/lease.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024 * 1024)

static char cmdline[4096];

/* One console line, written with a single write(2). */
static void say(const char *format, ...)
{
	char line[512];
	va_list args;
	va_start(args, format);
	int n = vsnprintf(line, sizeof line - 1, format, args);
	va_end(args);
	if (n < 0)
		return;
	if (n > (int)sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	(void)!write(1, line, n);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* FNV-1a 64: the host computes the same over the same bytes. */
static uint64_t fnv(uint64_t hash, const unsigned char *data, size_t length)
{
	for (size_t i = 0; i < length; i++)
		hash = (hash ^ data[i]) * 0x100000001b3ULL;
	return hash;
}
#define FNV_START 0xcbf29ce484222325ULL

/* The pattern the guest writes: xorshift64 from 2·seed + 1 (odd, distinct per seed), so the host can
 * recompute it. */
static void pattern(unsigned char *buffer, size_t length, uint64_t seed)
{
	uint64_t x = seed * 2 + 1;
	for (size_t i = 0; i < length; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buffer + i, &x, length - i < 8 ? length - i : 8);
	}
}

/* The value of `vireo.NAME=` on the kernel command line, or NULL; `vireo.NAME` alone gives "". */
static const char *param(const char *name)
{
	static char value[256];
	size_t length = strlen(name);
	for (char *p = cmdline; (p = strstr(p, "vireo.")) != NULL; p++) {
		if ((p != cmdline && p[-1] != ' ') || strncmp(p + 6, name, length) != 0)
			continue;
		char *rest = p + 6 + length;
		if (*rest == '=') {
			size_t n = strcspn(rest + 1, " \n");
			if (n >= sizeof value)
				n = sizeof value - 1;
			memcpy(value, rest + 1, n);
			value[n] = 0;
			return value;
		}
		if (*rest == ' ' || *rest == '\n' || *rest == 0)
			return "";
	}
	return NULL;
}

static long param_number(const char *name, long fallback)
{
	const char *value = param(name);
	return value && *value ? strtol(value, NULL, 0) : fallback;
}

static int wants(const char *test)
{
	const char *list = param("test");
	if (!list)
		return 0;
	size_t length = strlen(test);
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		if (n == length && strncmp(p, test, n) == 0)
			return 1;
		p += n + (p[n] == ',');
	}
	return 0;
}

/* Whether `flag` is a whole word of the space-separated `flags` line (ends at '\n' or NUL). */
static int has_flag(const char *flags, const char *flag)
{
	size_t length = strlen(flag);
	for (const char *p = flags; *p && *p != '\n';) {
		size_t n = strcspn(p, " \n");
		if (n == length && strncmp(p, flag, n) == 0)
			return 1;
		p += n;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/*
 * VIREO-CPU: what the VMM shapes in the guest's CPU and timekeeping, as the kernel ended up using
 * it: on emulated hosts `vireo.noerms` and `vireo.nocx16` clear erms/fsrm and cx16; without a PIT
 * (`--pit auto`) the clocksource is still kvm-clock or tsc, never jiffies.
 */
static void report_cpu(void)
{
	static char info[32768];
	size_t used = 0;
	int fd = open("/proc/cpuinfo", O_RDONLY);
	while (fd >= 0 && used < sizeof info - 1) {
		ssize_t n = read(fd, info + used, sizeof info - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	info[used] = 0;
	const char *flags = strstr(info, "\nflags");
	flags = flags ? strchr(flags, ':') : NULL;
	flags = flags ? flags + 1 : "";
	while (*flags == ' ')
		flags++;
	char clocksource[64] = "unknown";
	fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, clocksource, sizeof clocksource - 1);
		clocksource[n > 0 ? n : 0] = 0;
		clocksource[strcspn(clocksource, "\n")] = 0;
		close(fd);
	}
	say("VIREO-CPU flags=%d erms=%d fsrm=%d cx16=%d clocksource=%s", *flags != 0 && *flags != '\n',
	    has_flag(flags, "erms"), has_flag(flags, "fsrm"), has_flag(flags, "cx16"), clocksource);
}

static int write_all(int fd, const unsigned char *data, size_t length)
{
	while (length > 0) {
		ssize_t n = write(fd, data, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		length -= n;
	}
	return 0;
}

static int read_all(int fd, unsigned char *data, size_t length)
{
	while (length > 0) {
		ssize_t n = read(fd, data, length);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		length -= n;
	}
	return 0;
}

static unsigned char *buffer(size_t length)
{
	void *memory = NULL;
	return posix_memalign(&memory, 4096, length) == 0 ? memory : NULL;
}

/* ---- virtio-blk: a raw disk the host prepared -------------------------------------------------- */

/* The host wrote 1 MiB of its own bytes at offset 0; the guest reads and checksums them, writes
 * 1 MiB of pattern(seed) at 1 MiB and checksums that; then times 8 MiB of direct writes and
 * reads at 2 MiB (what `dd bs=1M oflag=direct` / `iflag=direct` does). */
static void test_blk(void)
{
	char path[64];
	snprintf(path, sizeof path, "/dev/%s", param("blk") ? param("blk") : "vda");
	uint64_t seed = param_number("seed", 1);
	unsigned char *data = buffer(MiB);
	int fd = open(path, O_RDWR | O_DIRECT | O_SYNC);
	if (!data || fd < 0) {
		say("VIREO-BLK FAIL open %s: %s", path, strerror(errno));
		return;
	}
	if (pread(fd, data, MiB, 0) != MiB) {
		say("VIREO-BLK FAIL read: %s", strerror(errno));
		close(fd);
		return;
	}
	uint64_t read_hash = fnv(FNV_START, data, MiB);
	pattern(data, MiB, seed);
	uint64_t write_hash = fnv(FNV_START, data, MiB);
	if (pwrite(fd, data, MiB, MiB) != MiB || fsync(fd) != 0) {
		say("VIREO-BLK FAIL write: %s", strerror(errno));
		close(fd);
		return;
	}
	say("VIREO-BLK ok read_fnv=%016llx wrote_fnv=%016llx", (unsigned long long)read_hash,
	    (unsigned long long)write_hash);

	const int chunks = 8;
	double start = now();
	for (int i = 0; i < chunks; i++)
		if (pwrite(fd, data, MiB, (off_t)(2 + i) * MiB) != MiB)
			break;
	fsync(fd);
	double wrote = now() - start;
	start = now();
	for (int i = 0; i < chunks; i++)
		if (pread(fd, data, MiB, (off_t)(2 + i) * MiB) != MiB)
			break;
	double read_time = now() - start;
	say("VIREO-BLK-BENCH direct bs=1M count=%d write_mbps=%.1f read_mbps=%.1f", chunks,
	    chunks / wrote, chunks / read_time);
	close(fd);
	free(data);
}

/* ---- ext4: mount a disk, read the host's file, write one for the host ------------------------ */

static void test_ext4(void)
{
	char path[64], text[256];
	snprintf(path, sizeof path, "/dev/%s", param("ext4") ? param("ext4") : "vdb");
	mkdir("/mnt", 0755);
	if (mount(path, "/mnt", "ext4", 0, NULL) != 0) {
		say("VIREO-EXT4 FAIL mount %s: %s", path, strerror(errno));
		return;
	}
	int fd = open("/mnt/host.txt", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
	if (fd >= 0)
		close(fd);
	text[n > 0 ? n : 0] = 0;
	text[strcspn(text, "\n")] = 0;
	char line[128];
	int length = snprintf(line, sizeof line, "written by the guest, seed %ld\n", param_number("seed", 1));
	fd = open("/mnt/guest.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int wrote = fd >= 0 && write_all(fd, (unsigned char *)line, length) == 0 && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	sync();
	int unmounted = umount("/mnt") == 0;
	if (n <= 0 || !wrote || !unmounted)
		say("VIREO-EXT4 FAIL host.txt=%s wrote=%d unmounted=%d: %s", n > 0 ? "read" : "missing", wrote,
		    unmounted, strerror(errno));
	else
		say("VIREO-EXT4 ok host.txt=\"%s\"", text);
}

/* ---- net: DHCP with busybox udhcpc, then TCP through the gateway to the host ------------------- */

static int run(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Connects, sends `length` bytes of pattern(seed), reads back as many (the host echoes) and
 * compares; then `trips` one-byte round trips. Returns 0 and fills the timings on success. */
static int exchange(int fd, size_t length, uint64_t seed, int trips, double *mbps, double *rtt_us,
		    uint64_t *hash, char *why, size_t why_size)
{
	unsigned char *out = malloc(length), *in = malloc(length);
	if (!out || !in) {
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	pattern(out, length, seed);
	*hash = fnv(FNV_START, out, length);
	double start = now();
	/* Small enough for the host's echo to fit socket buffers both ways: no deadlock. */
	const size_t step = 16384;
	for (size_t done = 0; done < length; done += step) {
		size_t n = length - done < step ? length - done : step;
		if (write_all(fd, out + done, n) != 0 || read_all(fd, in + done, n) != 0) {
			snprintf(why, why_size, "transfer at %zu: %s", done, strerror(errno));
			return -1;
		}
	}
	*mbps = length / (now() - start) / MiB;
	if (memcmp(in, out, length) != 0) {
		snprintf(why, why_size, "echo differs");
		return -1;
	}
	start = now();
	for (int i = 0; i < trips; i++) {
		unsigned char byte = (unsigned char)i;
		if (write_all(fd, &byte, 1) != 0 || read_all(fd, &byte, 1) != 0 || byte != (unsigned char)i) {
			snprintf(why, why_size, "round trip %d", i);
			return -1;
		}
	}
	*rtt_us = trips ? (now() - start) / trips * 1e6 : 0;
	free(out);
	free(in);
	return 0;
}

static int interface_up(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq request = {0};
	strncpy(request.ifr_name, name, IFNAMSIZ - 1);
	int ok = s >= 0 && ioctl(s, SIOCGIFFLAGS, &request) == 0;
	request.ifr_flags |= IFF_UP;
	ok = ok && ioctl(s, SIOCSIFFLAGS, &request) == 0;
	if (s >= 0)
		close(s);
	return ok ? 0 : -1;
}

static void test_net(void)
{
	if (interface_up("lo") != 0 || interface_up("eth0") != 0) {
		say("VIREO-NET FAIL bringing up lo/eth0: %s", strerror(errno));
		return;
	}
	char *dhcp[] = {"/bin/busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-s", "/init", NULL};
	double start = now();
	int status = run(dhcp);
	char lease[128] = "";
	int fd = open("/tmp/lease", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, lease, sizeof lease - 1) : -1;
	if (fd >= 0)
		close(fd);
	lease[n > 0 ? n : 0] = 0;
	char ip[64] = "", router[64] = "";
	if (status != 0 || sscanf(lease, "%63s %63s", ip, router) != 2) {
		say("VIREO-NET FAIL udhcpc status %d lease \"%s\"", status, lease);
		return;
	}
	say("VIREO-NET dhcp ip=%s router=%s seconds=%.1f", ip, router, now() - start);

	long port = param_number("port", 0);
	if (port <= 0 || port > 65535)
		return;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, router, &address.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&address, sizeof address) != 0) {
		say("VIREO-NET FAIL connect %s:%ld: %s", router, port, strerror(errno));
		if (s >= 0)
			close(s);
		return;
	}
	double mbps = 0, rtt = 0;
	uint64_t hash = 0;
	char why[128];
	size_t length = (size_t)param_number("netbytes", 65536);
	if (exchange(s, length, param_number("seed", 1) + 1, 20, &mbps, &rtt, &hash, why, sizeof why) == 0)
		say("VIREO-NET tcp ok bytes=%zu fnv=%016llx mbps=%.2f rtt_us=%.0f", length,
		    (unsigned long long)hash, mbps, rtt);
	else
		say("VIREO-NET FAIL tcp: %s", why);
	close(s);
}

/* Gives `interface` an address and netmask and brings it up. */
static int configure_interface(const char *interface, const char *ip, const char *netmask)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq request = {0};
	strncpy(request.ifr_name, interface, IFNAMSIZ - 1);
	struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
	in->sin_family = AF_INET;
	int ok = s >= 0 && inet_pton(AF_INET, ip, &in->sin_addr) == 1 && ioctl(s, SIOCSIFADDR, &request) == 0;
	if (ok && netmask && inet_pton(AF_INET, netmask, &in->sin_addr) == 1)
		ok = ioctl(s, SIOCSIFNETMASK, &request) == 0;
	ok = ok && ioctl(s, SIOCGIFFLAGS, &request) == 0;
	request.ifr_flags |= IFF_UP | IFF_RUNNING;
	ok = ok && ioctl(s, SIOCSIFFLAGS, &request) == 0;
	if (s >= 0)
		close(s);
	return ok ? 0 : -1;
}

/* TAP: a static address on a second NIC (`vireo.tap=eth1,10.200.0.2,255.255.255.0,10.200.0.1:PORT`),
 * then the same exchange with the host's echo server at the given peer. */
static void test_tap(void)
{
	char spec[256], *fields[4] = {0};
	snprintf(spec, sizeof spec, "%s", param("tap") ? param("tap") : "");
	char *cursor = spec;
	for (int i = 0; i < 4; i++)
		fields[i] = strsep(&cursor, ",");
	char *peer = fields[3], *colon = peer ? strchr(peer, ':') : NULL;
	if (!fields[2] || !colon) {
		say("VIREO-TAP FAIL vireo.tap=IFACE,IP,NETMASK,PEER:PORT expected, got \"%s\"", param("tap") ? param("tap") : "");
		return;
	}
	*colon = 0;
	if (configure_interface(fields[0], fields[1], fields[2]) != 0) {
		say("VIREO-TAP FAIL configuring %s: %s", fields[0], strerror(errno));
		return;
	}
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
	inet_pton(AF_INET, peer, &address.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&address, sizeof address) != 0) {
		say("VIREO-TAP FAIL connect %s:%s: %s", peer, colon + 1, strerror(errno));
		if (s >= 0)
			close(s);
		return;
	}
	double mbps = 0, rtt = 0;
	uint64_t hash = 0;
	char why[128];
	if (exchange(s, 65536, param_number("seed", 1) + 3, 20, &mbps, &rtt, &hash, why, sizeof why) == 0)
		say("VIREO-TAP ok iface=%s ip=%s bytes=65536 fnv=%016llx mbps=%.2f rtt_us=%.0f", fields[0], fields[1],
		    (unsigned long long)hash, mbps, rtt);
	else
		say("VIREO-TAP FAIL tcp: %s", why);
	close(s);
}

/* udhcpc's script: `init bound|renew` with ip, subnet, router, mtu in the environment. */
static int lease_script(const char *event)
{
	if (strcmp(event, "bound") != 0 && strcmp(event, "renew") != 0)
		return 0;
	const char *ip = getenv("ip"), *subnet = getenv("subnet"), *router = getenv("router"),
		   *interface = getenv("interface");
	if (!ip || !interface || configure_interface(interface, ip, subnet) != 0)
		return 1;
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	char first_router[64] = "";
	if (router) {
		sscanf(router, "%63s", first_router);
		struct rtentry route = {0};
		struct sockaddr_in *gateway = (struct sockaddr_in *)&route.rt_gateway;
		gateway->sin_family = AF_INET;
		inet_pton(AF_INET, first_router, &gateway->sin_addr);
		((struct sockaddr_in *)&route.rt_dst)->sin_family = AF_INET;
		((struct sockaddr_in *)&route.rt_genmask)->sin_family = AF_INET;
		route.rt_flags = RTF_UP | RTF_GATEWAY;
		route.rt_dev = (char *)interface;
		ioctl(s, SIOCADDRT, &route);
	}
	close(s);
	char text[160];
	int length = snprintf(text, sizeof text, "%s %s\n", ip, first_router[0] ? first_router : "none");
	int fd = open("/tmp/lease", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, (unsigned char *)text, length) != 0)
		return 1;
	close(fd);
	return 0;
}

/* ---- vsock: guest → host (CID 2) and host → guest ------------------------------------------------ */

static void test_vsock(void)
{
	long out_port = param_number("vsock_out", 6000), in_port = param_number("vsock_in", 5000);
	int s = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm host = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = out_port};
	if (s < 0 || connect(s, (struct sockaddr *)&host, sizeof host) != 0) {
		say("VIREO-VSOCK FAIL connect host port %ld: %s", out_port, strerror(errno));
	} else {
		double mbps = 0, rtt = 0;
		uint64_t hash = 0;
		char why[128];
		size_t length = (size_t)param_number("vsockbytes", 65536);
		if (exchange(s, length, param_number("seed", 1) + 2, 20, &mbps, &rtt, &hash, why, sizeof why) == 0)
			say("VIREO-VSOCK out ok bytes=%zu fnv=%016llx mbps=%.2f rtt_us=%.0f", length,
			    (unsigned long long)hash, mbps, rtt);
		else
			say("VIREO-VSOCK FAIL out: %s", why);
	}
	if (s >= 0)
		close(s);

	/* Host → guest: listen, announce, echo one connection until the host closes it. */
	int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
	struct sockaddr_vm any = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = in_port};
	if (listener < 0 || bind(listener, (struct sockaddr *)&any, sizeof any) != 0 || listen(listener, 1) != 0) {
		say("VIREO-VSOCK FAIL listen %ld: %s", in_port, strerror(errno));
		return;
	}
	say("VIREO-VSOCK listening port=%ld", in_port);
	int c = accept(listener, NULL, NULL);
	if (c < 0) {
		say("VIREO-VSOCK FAIL accept: %s", strerror(errno));
		close(listener);
		return;
	}
	unsigned char *data = malloc(65536);
	size_t total = 0;
	uint64_t hash = FNV_START;
	ssize_t n;
	while (data && (n = read(c, data, 65536)) > 0) {
		hash = fnv(hash, data, n);
		total += n;
		if (write_all(c, data, n) != 0)
			break;
	}
	say("VIREO-VSOCK in ok bytes=%zu fnv=%016llx", total, (unsigned long long)hash);
	free(data);
	close(c);
	close(listener);
}

/* ---- rng and balloon ------------------------------------------------------------------------------ */

static void test_rng(void)
{
	unsigned char bytes[32];
	int fd = open("/dev/hwrng", O_RDONLY);
	if (fd < 0 || read_all(fd, bytes, sizeof bytes) != 0) {
		say("VIREO-RNG FAIL /dev/hwrng: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	char hex[2 * sizeof bytes + 1];
	for (size_t i = 0; i < sizeof bytes; i++)
		snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
	say("VIREO-RNG ok bytes=%s", hex);
}

static long meminfo(const char *field)
{
	char text[2048];
	int fd = open("/proc/meminfo", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	text[n] = 0;
	char *line = strstr(text, field);
	return line ? strtol(line + strlen(field) + 1, NULL, 10) : -1;
}

/* Announces the guest's free memory, then waits (up to vireo.balloon_wait s) for the host to
 * inflate the balloon by at least vireo.balloon MiB, seen as that much less MemTotal. */
static void test_balloon(void)
{
	long want_kb = param_number("balloon", 16) * 1024, wait = param_number("balloon_wait", 300);
	long total = meminfo("MemTotal:"), free_kb = meminfo("MemFree:");
	say("VIREO-BALLOON ready total_kb=%ld free_kb=%ld", total, free_kb);
	double start = now();
	long current = total, current_free = free_kb;
	/* Inflated pages leave MemTotal (no deflate-on-OOM) and always MemFree. */
	while (now() - start < wait) {
		sleep(1);
		current = meminfo("MemTotal:");
		current_free = meminfo("MemFree:");
		if (total - current >= want_kb || free_kb - current_free >= want_kb)
			break;
	}
	if (total - current >= want_kb || free_kb - current_free >= want_kb)
		say("VIREO-BALLOON ok total_kb=%ld->%ld free_kb=%ld->%ld seconds=%.0f", total, current, free_kb,
		    current_free, now() - start);
	else
		say("VIREO-BALLOON FAIL total_kb=%ld->%ld free_kb=%ld->%ld after %ld s", total, current, free_kb,
		    current_free, wait);
}

/* ---- the shell, and the end of the VM --------------------------------------------------------------- */

static volatile sig_atomic_t stop_requested;
static void on_stop(int signal) { stop_requested = signal; }

/* busybox poweroff/reboot/halt (without -f) signal PID 1: SIGUSR2, SIGTERM, SIGUSR1. */
static void run_shell(void)
{
	pid_t shell = fork();
	if (shell == 0) {
		setsid();
		int fd = open(access("/dev/ttyS0", F_OK) == 0 ? "/dev/ttyS0" : "/dev/console", O_RDWR);
		if (fd >= 0) {
			ioctl(fd, TIOCSCTTY, 1);
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		char *argv[] = {"-sh", NULL};
		char *envp[] = {"PATH=/bin:/sbin", "HOME=/root", "TERM=linux", "PS1=vireo:\\w# ", NULL};
		chdir("/root");
		execve("/bin/busybox", argv, envp);
		_exit(127);
	}
	say("VIREO-SHELL started: `poweroff`, `reboot` or `exit` ends the VM");
	while (shell > 0 && !stop_requested) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid == shell || (pid < 0 && errno == ECHILD))
			break;
	}
}

int main(int argc, char **argv)
{
	if (getpid() != 1) {
		if (argc >= 2)
			return lease_script(argv[1]);
		fprintf(stderr, "vireo-init: this is the test guest's PID 1\n");
		return 2;
	}
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL); /* EBUSY when the kernel mounted it: fine */
	mkdir("/tmp", 01777);
	int fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
		cmdline[n > 0 ? n : 0] = 0;
		close(fd);
	}
	struct sigaction action = {.sa_handler = on_stop};
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGUSR1, &action, NULL);
	sigaction(SIGUSR2, &action, NULL);
	signal(SIGINT, SIG_IGN);

	say("VIREO-INIT-OK cpus=%ld", sysconf(_SC_NPROCESSORS_ONLN));
	report_cpu();
	double start = now();
	if (wants("rng"))
		test_rng();
	if (wants("blk"))
		test_blk();
	if (wants("ext4"))
		test_ext4();
	if (wants("net"))
		test_net();
	if (wants("tap"))
		test_tap();
	if (wants("vsock"))
		test_vsock();
	if (wants("balloon"))
		test_balloon();
	if (param("test"))
		say("VIREO-TESTS-DONE seconds=%.1f", now() - start);
	if (param("hold")) {
		/* The host inspects the running VM, then stops it (or signals init). */
		say("VIREO-HOLD");
		while (!stop_requested)
			pause();
	}
	if (param("shell"))
		run_shell();
	say("VIREO-INIT-DONE");
	kill(-1, SIGTERM);
	sync();
	reboot(RB_AUTOBOOT);
	say("VIREO-INIT-REBOOT-FAILED");
	for (;;)
		pause();
}
