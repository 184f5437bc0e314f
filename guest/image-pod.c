/*
 * A pod's containers as processes of one VM (containerd-shim-vireo-v2). The host hot attaches a
 * container's root disk (an ext4 overlay of its image) to an empty virtio-blk slot whose serial is
 * "vireo-slot-N", then asks the exec agent (image-agent.c) for a process with the record
 * R<slot>: that process gets a private mount namespace (and PID namespace where the guest kernel
 * has them), mounts the slot's disk, chroots into it and mounts /proc, /sys and /dev there, so it
 * sees its own image's files and nothing of the sandbox's or the other containers'. The disk is
 * unmounted when the last process of the namespace ends; the host detaches it after that.
 * A later exec into the container (record C<slot>) enters the same root through
 * /proc/<first process>/root, found by a pid file kept in the initramfs.
 * The host is not trusted: slot names are checked, device names come from the guest's own sysfs,
 * waits are bounded.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "image-pod.h"

#define POD_DIR "/pod"
#define POD_MOUNT_OPTIONS "noinit_itable,no_prefetch_block_bitmaps,noload"

int pod_valid_slot(const char *slot)
{
	static const char prefix[] = "vireo-slot-";
	size_t length = strlen(slot), digits = length - (sizeof prefix - 1);
	/* "vireo-slot-" and one or two digits (sizeof prefix counts the NUL: one digit). */
	if (length < sizeof prefix || length > sizeof prefix + 1 || strncmp(slot, prefix, sizeof prefix - 1) != 0)
		return 0;
	for (size_t i = sizeof prefix - 1; i < length; i++)
		if (slot[i] < '0' || slot[i] > '9')
			return 0;
	return digits >= 1 && digits <= 2;
}

/* Reads a small sysfs file into `buffer` (newline stripped); 0 or -1. */
static int pod_read_small(const char *path, char *buffer, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t got = read(fd, buffer, size - 1);
	close(fd);
	if (got < 0)
		return -1;
	buffer[got] = 0;
	buffer[strcspn(buffer, "\n")] = 0;
	return 0;
}

/* /dev/vdX for the slot once its disk has a capacity (the config-change interrupt is handled
 * asynchronously by the guest's driver): waits up to 10 s. 0 or -1. */
static int pod_slot_device(const char *slot, char *device, size_t size)
{
	if (access("/sys/block", F_OK) != 0) {
		mkdir("/sys", 0555);
		if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 && errno != EBUSY)
			return -1;
	}
	for (int tries = 0; tries < 200; tries++) {
		DIR *blocks = opendir("/sys/block");
		if (!blocks)
			return -1;
		struct dirent *entry;
		int found = 0;
		while ((entry = readdir(blocks))) {
			if (strncmp(entry->d_name, "vd", 2) != 0 || strlen(entry->d_name) > 8 || strchr(entry->d_name, '/'))
				continue;
			char path[64], value[64];
			snprintf(path, sizeof path, "/sys/block/%.8s/serial", entry->d_name);
			if (pod_read_small(path, value, sizeof value) != 0 || strcmp(value, slot) != 0)
				continue;
			snprintf(path, sizeof path, "/sys/block/%.8s/size", entry->d_name);
			if (pod_read_small(path, value, sizeof value) == 0 && strtoull(value, NULL, 10) > 0) {
				snprintf(device, size, "/dev/%.8s", entry->d_name);
				found = 1;
			}
			break;
		}
		closedir(blocks);
		if (found)
			return 0;
		usleep(50000);
	}
	errno = ENXIO;
	return -1;
}

static void pod_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data)
{
	mkdir(target, 0755);
	if (mount(source, target, type, flags, data) != 0 && errno != EBUSY)
		dprintf(2, "vireo-agent: mount %s on %s: %s\n", type, target, strerror(errno));
}

/* /dev as runc makes it: a tmpfs with the few character devices a program expects, not devtmpfs
 * (which would show every disk of the VM, the other containers' among them). */
static void pod_minimal_dev(void)
{
	static const struct { const char *name; unsigned major, minor; } nodes[] = {
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
	};
	pod_mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
		char path[32];
		snprintf(path, sizeof path, "/dev/%s", nodes[i].name);
		if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor)) == 0)
			chmod(path, 0666); /* past the umask */
	}
	symlink("/proc/self/fd", "/dev/fd");
	symlink("/proc/self/fd/0", "/dev/stdin");
	symlink("/proc/self/fd/1", "/dev/stdout");
	symlink("/proc/self/fd/2", "/dev/stderr");
	pod_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

void pod_drop_capabilities(void)
{
	/* Docker's default set without CAP_MKNOD (no device cgroup here): no mount, no raw I/O, no
	 * module or ptrace powers, so root in one container cannot reach another's disk or processes. */
	static const int kept[] = {0 /* CHOWN */, 1 /* DAC_OVERRIDE */, 3 /* FOWNER */, 4 /* FSETID */, 5 /* KILL */,
	                           6 /* SETGID */, 7 /* SETUID */, 8 /* SETPCAP */, 10 /* NET_BIND_SERVICE */,
	                           13 /* NET_RAW */, 18 /* SYS_CHROOT */, 29 /* AUDIT_WRITE */, 31 /* SETFCAP */};
	for (int cap = 0; cap < 64; cap++) {
		int keep = 0;
		for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
			keep |= kept[i] == cap;
		if (!keep && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL)
			break; /* past the kernel's last capability */
	}
}

int pod_enter_new_root(const char *slot)
{
	char device[32], root[64];
	if (!pod_valid_slot(slot) || pod_slot_device(slot, device, sizeof device) != 0) {
		dprintf(2, "vireo-agent: no disk attached at %s: %s\n", slot, strerror(errno));
		return -1;
	}
	/* The mount is private to the container: gone with its last process. */
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		dprintf(2, "vireo-agent: cannot make a mount namespace: %s\n", strerror(errno));
		return -1;
	}
	mkdir(POD_DIR, 0700);
	snprintf(root, sizeof root, POD_DIR "/%s", slot);
	mkdir(root, 0755);
	if (mount(device, root, "ext4", MS_NOSUID | MS_NODEV, POD_MOUNT_OPTIONS) != 0) {
		dprintf(2, "vireo-agent: cannot mount %s (%s): %s\n", device, slot, strerror(errno));
		return -1;
	}
	if (chdir(root) != 0 || chroot(".") != 0 || chdir("/") != 0) {
		dprintf(2, "vireo-agent: cannot enter %s: %s\n", root, strerror(errno));
		return -1;
	}
	pod_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	pod_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
	pod_minimal_dev();
	return 0;
}

int pod_new_pid_namespace(void)
{
	return unshare(CLONE_NEWPID) == 0;
}

void pod_join_pid_namespace(pid_t pid)
{
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* no PID namespaces in this kernel: the exec shares the VM's */
	setns(fd, CLONE_NEWPID);
	close(fd);
}

static void pod_pid_path(const char *slot, char *path, size_t size)
{
	snprintf(path, size, POD_DIR "/%s.pid", slot);
}

void pod_record(const char *slot, pid_t pid)
{
	char path[64];
	if (!pod_valid_slot(slot))   /* the name becomes a path */
		return;
	mkdir(POD_DIR, 0700);
	pod_pid_path(slot, path, sizeof path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dprintf(fd, "%d\n", (int)pid);
		close(fd);
	}
}

pid_t pod_lookup(const char *slot)
{
	char path[64], text[24];
	if (!pod_valid_slot(slot))
		return -1;
	pod_pid_path(slot, path, sizeof path);
	if (pod_read_small(path, text, sizeof text) != 0)
		return -1;
	long pid = strtol(text, NULL, 10);
	return pid > 1 ? (pid_t)pid : -1;
}

void pod_forget(const char *slot)
{
	char path[64];
	if (!pod_valid_slot(slot))
		return;
	pod_pid_path(slot, path, sizeof path);
	unlink(path);
}
