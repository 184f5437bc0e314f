/*
 * Vireo's PID 1 for OCI images (`vireo run --image`). Static, no libraries beyond libc.
 *
 * The host attaches two disks: /dev/vda, the image's root filesystem (ext4, a copy-on-write overlay
 * over the cached base), and /dev/vdb, the run's config block. The config block is:
 *   bytes 0..7   "VIREOCF1"
 *   bytes 8..11  length N of the records (little-endian u32)
 *   bytes 12..   N bytes of records, each "<tag><value>\0":
 *                A argv element (in order), E "KEY=VALUE", W working directory, U user[:group],
 *                H hostname, T (present when the host's output is a terminal); and, for
 *                image-setup.c: Y "ROWS COLUMNS" (-t), N "A.B.C.D/N", G gateway, D DNS server
 *                (eth0's fixed addresses), R "RESOURCE SOFT HARD" (--ulimit)
 *   at 4096     (or the first 4 KiB boundary past the records) this init writes "VIREOST1" and the exit status as decimal text, NUL-terminated,
 *               then "oom" NUL-terminated when the guest kernel's OOM killer killed a process during the run,
 *               then syncs, so the host can exit with the program's status.
 * The program's stdio is the serial console (/dev/console). PID 1 forks the workload process first
 * thing; that process mounts the root, moves it over /, mounts the pseudo-filesystems, reads the
 * config disk, and becomes
 * the program in its own session with the console as its controlling terminal. PID 1 forwards
 * signals to it, reaps every orphan, and reboots the VM (the VMM ends the VM on a reboot) once the
 * program has exited, after writing its status. Forking before anything else puts the fork (and in
 * a warm start everything PID 1 sets up for itself) before the snapshot, off the restored path: on
 * hosts that emulate guest kernel mode a fork of even this small init costs a large part of a second.
 *
 * Warm start (`vireo_warm=1` on the kernel command line, which the kernel passes to init as an
 * environment variable): the host boots once to the point where the init listens on vsock port 1025
 * and prints "vireo-init: ready" (the workload process already forked and waiting in accept), snapshots the VM there, and ends it. Both disks are empty (0
 * sectors) at that point and nothing has read them. Every later run restores that snapshot with the
 * run's disks in their place (the VMM raises a config-change interrupt for the new capacities) and
 * connects to port 1025 with one line "VIREOGO1 <sec> <nsec> <64 hex digits>\n": the host's wall
 * clock and a 32-byte seed. The init sets the clock, mixes the seed into the kernel's pool and
 * forces a reseed of its CRNG (so clones of one snapshot never share random bytes), answers "OK\n"
 * and goes on as a cold boot does from the config disk on, which carries the run's own hostname.
 *
 * Image snapshots: a run that restored that generic snapshot may first send
 * "VIREOPREP1 <sec> <nsec> <64 hex digits> <hex program> <hex PATH>\n": the workload process then
 * mounts and enters the root, mounts the pseudo-filesystems, brings up loopback, reads the program
 * (and its ELF or "#!" interpreter) into the page cache, syncs, answers "READY\n" and waits in accept
 * on vsock port 1027. The host snapshots it there (with the root disk as it is then, as a template) and sends the
 * run's "VIREOGO1" line; later runs of the image restore that snapshot and send only "VIREOGO1". The
 * config disk is never read before either snapshot (its capacity may be an earlier run's: the init
 * drops any cached block of it and waits for the capacity its header asks for).
 *
 * Signals for the program come from the host over vsock (when the VM has a vsock device): the host
 * connects to port 1024 and writes the signal number as decimal text; the init sends it to the
 * program. Signals sent to the init itself are forwarded too. On the same port "W ROWS COLUMNS" sets
 * the console's window size (the host terminal was resized; the program gets SIGWINCH).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <poll.h>
#include "image-vsock.h"
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <elf.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "image-setup.h"
#include "image-agent.h"

#define STATUS_OFFSET 4096
#define MAX_RECORDS (1 << 20)
#define MAX_ITEMS 4096

static int config_fd = -1;
static off_t status_offset = STATUS_OFFSET;

static void message(const char *text)
{
	dprintf(2, "vireo-init: %s\n", text);
}

static void locate_status(void);

/* The guest kernel's OOM kills so far (/proc/vmstat oom_kill; PID 1 mounts proc in the initramfs
 * when it has none), or 0 when unknown. Read once, when the program has ended: every VM starts at 0
 * (a warm-start snapshot is taken before any workload ran). */
static long oom_kills(void)
{
	if (access("/proc/self", F_OK) != 0) {
		mkdir("/proc", 0555);
		mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
	FILE *file = fopen("/proc/vmstat", "re");
	if (!file)
		return 0;
	char line[128];
	long count = 0;
	while (fgets(line, sizeof line, file))
		if (sscanf(line, "oom_kill %ld", &count) == 1)
			break;
	fclose(file);
	return count;
}

/* Ends the VM after writing `status` to the config disk: the host reads it back. In the workload
 * process (not PID 1) it only exits with `status`: PID 1 writes it when it reaps the process. */
static void finish(int status)
{
	if (getpid() != 1)
		_exit(status);
	char record[32];
	memset(record, 0, sizeof record);
	int n = snprintf(record, sizeof record, "VIREOST1%d", status);
	/* After the status's NUL: "oom" when the guest kernel's OOM killer killed a process during the run
	 * (hosts that read only the status see nothing new). */
	if (n > 0 && oom_kills() > 0)
		memcpy(record + n + 1, "oom", 4);
	locate_status();
	if (config_fd >= 0 && n > 0) {
		if (pwrite(config_fd, record, sizeof record, status_offset) != (ssize_t)sizeof record)
			message("cannot write the exit status to /dev/vdb");
		fsync(config_fd);
	}
	kill(-1, SIGKILL);
	sync();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static void fail(const char *what)
{
	dprintf(2, "vireo-init: %s: %s\n", what, strerror(errno));
	finish(127);
}

/* The devices appear when their drivers probe; the built-in virtio driver is done before init, but
 * wait a little anyway rather than fail on a slow probe. */
static int open_device(const char *path, int flags)
{
	for (int tries = 0; tries < 100; tries++) {
		int fd = open(path, flags | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		usleep(50000);
	}
	return -1;
}

static int warm;

/* Blocks until `fd` (a virtio disk) has a capacity: after a warm restore the driver learns it from
 * the config-change interrupt in a kernel worker, which may not have run yet. */
static void wait_for_capacity(int fd, const char *name)
{
	for (int tries = 0; tries < 5000; tries++) {
		uint64_t bytes = 0;
		if (ioctl(fd, BLKGETSIZE64, &bytes) != 0 || bytes > 0)
			return;
		usleep(1000);
	}
	dprintf(2, "vireo-init: %s still has no capacity after the restore\n", name);
}

/* Blocks until `fd` holds at least `bytes`: an image snapshot keeps the config disk's capacity of
 * the run that made it, and this run's (larger) one arrives with a config-change interrupt. */
static void wait_for_size(int fd, uint64_t bytes)
{
	for (int tries = 0; tries < 5000; tries++) {
		uint64_t size = 0;
		if (ioctl(fd, BLKGETSIZE64, &size) != 0 || size >= bytes)
			return;
		usleep(1000);
	}
}

static char *records;
static size_t records_length;

/* PID 1, at the end: opens the config disk and finds where the status goes (past the records). */
static void locate_status(void)
{
	unsigned char header[12];
	if (config_fd < 0)
		config_fd = open("/dev/vdb", O_RDWR | O_CLOEXEC);
	if (config_fd < 0 || pread(config_fd, header, sizeof header, 0) != (ssize_t)sizeof header || memcmp(header, "VIREOCF1", 8) != 0)
		return;
	uint32_t length = header[8] | header[9] << 8 | header[10] << 16 | (uint32_t)header[11] << 24;
	if (length <= MAX_RECORDS && 12 + (off_t)length > STATUS_OFFSET)
		status_offset = (12 + (off_t)length + 4095) / 4096 * 4096;
}

static void read_config(void)
{
	unsigned char header[12];
	config_fd = open_device("/dev/vdb", O_RDWR);
	if (config_fd < 0)
		fail("open /dev/vdb (the run's config disk)");
	if (warm) {
		wait_for_capacity(config_fd, "/dev/vdb");
		/* A restored guest must read this run's block, never a page an earlier run's cached. */
		ioctl(config_fd, BLKFLSBUF, 0);
	}
	if (pread(config_fd, header, sizeof header, 0) != (ssize_t)sizeof header || memcmp(header, "VIREOCF1", 8) != 0) {
		errno = EINVAL;
		fail("/dev/vdb holds no Vireo config block");
	}
	uint32_t length = header[8] | header[9] << 8 | header[10] << 16 | (uint32_t)header[11] << 24;
	if (length > MAX_RECORDS || (length > 0 && 12 + length > STATUS_OFFSET * 256)) {
		errno = EFBIG;
		fail("config block too large");
	}
	if (12 + (off_t)length > STATUS_OFFSET)
		status_offset = (12 + (off_t)length + 4095) / 4096 * 4096;
	if (warm) /* the host's disk ends with the 4 KiB status block */
		wait_for_size(config_fd, (uint64_t)status_offset + 4096);
	records = calloc(1, length + 1);
	if (!records)
		fail("calloc");
	if (pread(config_fd, records, length, sizeof header) != (ssize_t)length)
		fail("read config records");
	records_length = length;
}

/* Collects the values of every record with `tag`, in order, NULL-terminated. */
static char **values(char tag, size_t *count)
{
	static char *none[1];
	char **list = calloc(MAX_ITEMS + 1, sizeof *list);
	size_t n = 0;
	if (!list)
		return none;
	for (size_t at = 0; at < records_length;) {
		size_t length = strnlen(records + at, records_length - at);
		if (records[at] == tag && n < MAX_ITEMS)
			list[n++] = records + at + 1;
		at += length + 1;
	}
	if (count)
		*count = n;
	return list;
}

static const char *value(char tag)
{
	char **list = values(tag, NULL);
	const char *last = NULL;
	for (size_t i = 0; list[i]; i++)
		last = list[i];
	return last;
}

static void mount_at(const char *source, const char *target, const char *type, unsigned long flags, const char *data)
{
	mkdir(target, 0755);
	if (mount(source, target, type, flags, data) != 0 && errno != EBUSY)
		dprintf(2, "vireo-init: mount %s on %s: %s\n", type, target, strerror(errno));
}

/* ext4 options: no zeroing of inode tables (the base is sparse, they read as zeros) and no block
 * bitmap prefetch (a kernel thread that reads and checks every group's bitmap right after the mount,
 * competing with the program for the one vCPU; bitmaps are read when an allocation needs them). A
 * warm start is always a `vireo run --image`, whose overlay is deleted when the VM ends, so it skips
 * the journal too (`noload`: no journal thread, no journal reads; the base is clean, so there is
 * nothing to replay); a cold boot may be a daemon VM whose overlay outlives a crash, so it keeps it. */
#define ROOT_OPTIONS "noinit_itable,no_prefetch_block_bitmaps"
#define WARM_ROOT_OPTIONS ROOT_OPTIONS ",noload"

/* Set once the workload process has mounted the root disk and entered it: in a restored image
 * snapshot this was done before the snapshot. */
static int root_entered;

/* Mounts /dev/vda, moves it over / and enters it, and mounts the pseudo-filesystems. */
static void enter_root(void)
{
	if (root_entered)
		return;
	root_entered = 1;
	if (warm) {
		int root = open_device("/dev/vda", O_RDONLY);
		if (root >= 0) {
			wait_for_capacity(root, "/dev/vda");
			close(root);
		}
	}
	mkdir("/newroot", 0755);
	int tries = 0;
	while (mount("/dev/vda", "/newroot", "ext4", 0, warm ? WARM_ROOT_OPTIONS : ROOT_OPTIONS) != 0) {
		if (errno != ENOENT || ++tries > 100)
			fail("mount /dev/vda (the image's root disk)");
		usleep(50000);
	}
	if (chdir("/newroot") != 0)
		fail("chdir /newroot");
	/* The initramfs stays underneath (it is rootfs and cannot be unmounted); it is a few hundred KiB. */
	if (mount(".", "/", NULL, MS_MOVE, NULL) != 0)
		fail("move the root disk over /");
	if (chroot(".") != 0 || chdir("/") != 0)
		fail("chroot into the root disk");
	mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_at("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	mount_at("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	mount_at("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_at("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
}

/* Looks `name` up in the image's /etc/passwd (or /etc/group when `group`): its id, or -1. */
static long lookup(const char *name, int group, gid_t *primary)
{
	char *end;
	long number = strtol(name, &end, 10);
	if (*name && *end == 0)
		return number;
	FILE *file = fopen(group ? "/etc/group" : "/etc/passwd", "re");
	if (!file)
		return -1;
	char line[1024];
	long found = -1;
	while (fgets(line, sizeof line, file)) {
		char *fields[4] = {0};
		char *p = line;
		for (int i = 0; i < 4 && p; i++) {
			fields[i] = strsep(&p, ":\n");
		}
		if (fields[0] && fields[2] && strcmp(fields[0], name) == 0) {
			found = strtol(fields[2], NULL, 10);
			if (!group && primary && fields[3])
				*primary = (gid_t)strtol(fields[3], NULL, 10);
			break;
		}
	}
	fclose(file);
	return found;
}

/* Primary group of uid from /etc/passwd, or `fallback`. */
static gid_t primary_group(uid_t uid, gid_t fallback)
{
	FILE *file = fopen("/etc/passwd", "re");
	if (!file)
		return fallback;
	char line[1024];
	gid_t gid = fallback;
	while (fgets(line, sizeof line, file)) {
		char *fields[4] = {0};
		char *p = line;
		for (int i = 0; i < 4 && p; i++)
			fields[i] = strsep(&p, ":\n");
		if (fields[2] && fields[3] && strtol(fields[2], NULL, 10) == (long)uid) {
			gid = (gid_t)strtol(fields[3], NULL, 10);
			break;
		}
	}
	fclose(file);
	return gid;
}

static void become_user(const char *spec)
{
	if (!spec || !*spec)
		return;
	char *copy = strdup(spec);
	char *group = strchr(copy, ':');
	if (group)
		*group++ = 0;
	gid_t gid = 0;
	long uid = lookup(copy, 0, &gid);
	if (uid < 0) {
		dprintf(2, "vireo-init: user '%s' is not in the image's /etc/passwd\n", copy);
		_exit(126);
	}
	if (group) {
		long g = lookup(group, 1, NULL);
		if (g < 0) {
			dprintf(2, "vireo-init: group '%s' is not in the image's /etc/group\n", group);
			_exit(126);
		}
		gid = (gid_t)g;
	} else if (isdigit((unsigned char)copy[0])) {
		gid = primary_group((uid_t)uid, 0); /* a bare uid: its passwd group if it has one, else 0 */
	}
	if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid((uid_t)uid) != 0) {
		dprintf(2, "vireo-init: cannot become %s: %s\n", spec, strerror(errno));
		_exit(126);
	}
}

/* execvpe with the program's PATH (from its own environment, as the image config sets it). */
static void run_program(char **argv, char **envp)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			path = envp[i] + 5;
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, envp);
	} else {
		char candidate[4096];
		const char *p = path;
		while (*p) {
			size_t n = strcspn(p, ":");
			snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, p, argv[0]);
			execve(candidate, argv, envp);
			p += n + (p[n] == ':');
		}
		errno = ENOENT;
	}
	dprintf(2, "vireo-init: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

#define SIGNAL_PORT 1024

static pid_t child;
static int signal_pipe[2] = {-1, -1};

/* The test kernel has no signalfd: handlers pass signal numbers through a pipe the main loop polls. */
static void on_signal(int number)
{
	unsigned char byte = (unsigned char)number;
	int saved = errno;
	if (write(signal_pipe[1], &byte, 1) < 0) { /* pipe full: SIGCHLD is re-checked on every wake-up */ }
	errno = saved;
}

/* A listening vsock socket for the host's signals, or -1 (no vsock device: nothing to forward). */
static int listen_for_signals(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = SIGNAL_PORT};
	if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 4) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The host's terminal changed size (`vireo run --image -t`, containerd's ResizePty): "W ROWS COLUMNS".
 * Setting the console's size makes the kernel send SIGWINCH to the program's foreground group. */
static int resize_console(const char *text)
{
	unsigned rows, columns;
	if (sscanf(text, "W %u %u", &rows, &columns) != 2 || rows == 0 || rows > 65535 || columns == 0 || columns > 65535)
		return -1;
	struct winsize window = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
	return ioctl(0, TIOCSWINSZ, &window);
}

/* One host connection: a signal number (1-64) as text, or a window size ("W ROWS COLUMNS");
 * anything else is ignored. */
static void receive_signal(int listener)
{
	int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (connection < 0)
		return;
	char text[32] = {0};
	struct pollfd wait_for = {.fd = connection, .events = POLLIN};
	if (poll(&wait_for, 1, 1000) == 1 && read(connection, text, sizeof text - 1) > 0) {
		char *end;
		long number = strtol(text, &end, 10);
		int done = text[0] == 'W' ? resize_console(text) == 0 : end != text && number >= 1 && number <= 64 && child > 0 && kill(child, (int)number) == 0;
		if (done && write(connection, "OK\n", 3) < 0) { /* the host may have gone: fine */ }
	}
	close(connection);
}

/* ---- Warm start: wait for the host's hand-off after a snapshot restore ---- */

#define WARM_PORT 1025
#define PREPARED_PORT 1027
/* <linux/random.h>'s ioctls (musl ships no kernel headers). */
#define VIREO_RNDADDENTROPY _IOW('R', 0x03, int[2])
#define VIREO_RNDRESEEDCRNG _IO('R', 0x07)

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Sets the clock and reseeds the CRNG from a hand-off's "<sec> <nsec> <64 hex digits>"; 0 when well formed. */
static int warm_apply(long long seconds, long long nanoseconds, const char *hex)
{
	if (strlen(hex) != 64 || nanoseconds < 0 || nanoseconds >= 1000000000LL)
		return -1;
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[32];
	} seed = {.entropy_count = 256, .buf_size = 32};
	for (int i = 0; i < 32; i++) {
		int high = hex_digit(hex[2 * i]), low = hex_digit(hex[2 * i + 1]);
		if (high < 0 || low < 0)
			return -1;
		seed.buf[i] = (unsigned char)(high << 4 | low);
	}
	struct timespec now = {.tv_sec = (time_t)seconds, .tv_nsec = (long)nanoseconds};
	if (clock_settime(CLOCK_REALTIME, &now) != 0)
		message("cannot set the clock after the restore");
	int random = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (random < 0 || ioctl(random, VIREO_RNDADDENTROPY, &seed) != 0 || ioctl(random, VIREO_RNDRESEEDCRNG) != 0)
		message("cannot reseed the random number generator after the restore");
	if (random >= 0)
		close(random);
	memset(&seed, 0, sizeof seed);
	return 0;
}

/* Decodes lower-case hex into `out` (NUL-terminated); 0 when it fits and is well formed. */
static int hex_decode(const char *hex, char *out, size_t capacity)
{
	size_t length = strlen(hex);
	if (length % 2 != 0 || length / 2 >= capacity)
		return -1;
	for (size_t i = 0; i < length / 2; i++) {
		int high = hex_digit(hex[2 * i]), low = hex_digit(hex[2 * i + 1]);
		if (high < 0 || low < 0 || (high == 0 && low == 0))
			return -1;
		out[i] = (char)(high << 4 | low);
	}
	out[length / 2] = 0;
	return 0;
}

/* Reads `path` whole (bounded) so its pages sit in the page cache when the program is exec'd after
 * a restore: faulting a binary in from disk is the largest cost of a warm start where guest kernel
 * mode is emulated. Follows an ELF's PT_INTERP or a script's "#!" interpreter once. */
static void preread(const char *path, int depth)
{
	static char buffer[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char interpreter[256] = {0};
	ssize_t n;
	off_t total = 0;
	while (total < (256 << 20) && (n = read(fd, buffer, sizeof buffer)) > 0) {
		if (total == 0 && n >= 2 && buffer[0] == '#' && buffer[1] == '!') {
			size_t at = 2, length = 0;
			while (at < (size_t)n && (buffer[at] == ' ' || buffer[at] == '\t'))
				at++;
			while (at < (size_t)n && length < sizeof interpreter - 1 && buffer[at] != ' ' && buffer[at] != '\t' && buffer[at] != '\n')
				interpreter[length++] = buffer[at++];
		}
		if (total == 0 && (size_t)n >= sizeof(Elf64_Ehdr) && memcmp(buffer, ELFMAG, SELFMAG) == 0 && buffer[EI_CLASS] == ELFCLASS64) {
			Elf64_Ehdr header;
			memcpy(&header, buffer, sizeof header);
			for (unsigned i = 0; i < header.e_phnum && i < 64; i++) {
				Elf64_Phdr program;
				if (pread(fd, &program, sizeof program, (off_t)(header.e_phoff + (uint64_t)i * header.e_phentsize)) != (ssize_t)sizeof program)
					break;
				if (program.p_type == PT_INTERP && program.p_filesz > 1 && program.p_filesz < sizeof interpreter) {
					if (pread(fd, interpreter, program.p_filesz, (off_t)program.p_offset) != (ssize_t)program.p_filesz)
						interpreter[0] = 0;
					interpreter[sizeof interpreter - 1] = 0;
					break;
				}
			}
		}
		total += n;
	}
	close(fd);
	if (depth == 0 && interpreter[0] == '/')
		preread(interpreter, 1);
}

/* A prepare hand-off: mounts and enters the root, brings up loopback and pre-reads the program
 * (`program` resolved with `path` as execvpe would), then syncs, so that the host's snapshot of the
 * guest waiting for its next hand-off holds no dirty page and no request in flight. */
static void warm_prepare(const char *program, const char *path)
{
	enter_root();
	image_setup_network(NULL, NULL, NULL);
	if (strchr(program, '/')) {
		preread(program, 0);
	} else {
		char candidate[4096];
		for (const char *p = path; *p;) {
			size_t n = strcspn(p, ":");
			snprintf(candidate, sizeof candidate, "%.*s/%s", (int)n, p, program);
			if (access(candidate, X_OK) == 0) {
				preread(candidate, 0);
				break;
			}
			p += n + (p[n] == ':');
		}
	}
	sync();
}

/* One hand-off line. "VIREOGO1 <sec> <nsec> <seed>": run (1). "VIREOPREP1 <sec> <nsec> <seed>
 * <hex program> <hex PATH>": prepare for an image snapshot, then wait for the next line on
 * PREPARED_PORT (2). -1: bad. */
static int warm_handle(const char *line)
{
	long long seconds, nanoseconds;
	static char seed[65], program_hex[2 * 1024 + 1], path_hex[2 * 2048 + 1];
	static char program[1024], path[2048];
	if (sscanf(line, "VIREOGO1 %lld %lld %64s", &seconds, &nanoseconds, seed) == 3)
		return warm_apply(seconds, nanoseconds, seed) == 0 ? 1 : -1;
	if (sscanf(line, "VIREOPREP1 %lld %lld %64s %2048s %4096s", &seconds, &nanoseconds, seed, program_hex, path_hex) != 5 ||
	    hex_decode(program_hex, program, sizeof program) != 0 || hex_decode(path_hex, path, sizeof path) != 0 ||
	    warm_apply(seconds, nanoseconds, seed) != 0)
		return -1;
	warm_prepare(program, path);
	return 2;
}

/* Listens on `port`: WARM_PORT in PID 1, before the fork (the workload process inherits the
 * socket); PREPARED_PORT in the workload process once it prepared for an image snapshot. */
static int warm_listen(unsigned port)
{
	int listener = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
	if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0)
		fail("listen on vsock for the warm start's hand-off");
	return listener;
}

/* The workload process: returns once a restored copy got its run hand-off (the host snapshots the
 * VM while this waits in accept). A prepare hand-off is answered "READY" once done, and the wait
 * goes on (the host snapshots the prepared guest here, too). A connection with anything else is
 * dropped and the wait goes on. */
static void warm_accept(int listener)
{
	static char line[8192];
	for (;;) {
		int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (connection < 0)
			continue;
		size_t length = 0;
		struct pollfd wait_for = {.fd = connection, .events = POLLIN};
		while (length < sizeof line - 1 && poll(&wait_for, 1, 5000) == 1) {
			ssize_t n = read(connection, line + length, sizeof line - 1 - length);
			if (n <= 0)
				break;
			length += (size_t)n;
			if (memchr(line, '\n', length))
				break;
		}
		line[length] = 0;
		int outcome = memchr(line, '\n', length) ? warm_handle(line) : -1;
		if (outcome == 1 && write(connection, "OK\n", 3) < 0) { /* the host sees no OK and gives up */ }
		if (outcome == 2) {
			/* The prepared guest takes its hand-off on another port: this connection may still be
			 * closing when the host snapshots, and a restored VMM numbers its first connection as
			 * the one that made the snapshot did; on the same port the guest would refuse it. */
			int prepared = warm_listen(PREPARED_PORT);
			close(listener);
			listener = prepared;
			if (write(connection, "READY\n", 6) < 0) { /* the host sees no READY and gives up */ }
		}
		close(connection);
		if (outcome == 1)
			break;
	}
	close(listener);
}

/* The workload process: waits for the hand-off (warm), sets up the root and the program's
 * environment, and execs the program. Never returns. */
static void workload(int handoff)
{
	setsid();
	ioctl(0, TIOCSCTTY, 1); /* the console is the controlling terminal: ^C reaches the program */
	if (handoff >= 0)
		warm_accept(handoff);
	int prepared = root_entered;
	enter_root();
	read_config();
	/* The console again, opened inside the image's root: the program's stdio then names /dev/console
	 * there (`tty`, ttyname), not a file of the initramfs it cannot see. The same tty: it stays the
	 * controlling terminal. */
	int console = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (console >= 0) {
		dup2(console, 0);
		dup2(console, 1);
		dup2(console, 2);
		close(console);
	}

	size_t argc = 0;
	char **argv = values('A', &argc);
	char **envp = values('E', NULL);
	const char *workdir = value('W');
	const char *user = value('U');
	const char *hostname = value('H');
	if (argc == 0) {
		message("the image has no ENTRYPOINT or CMD and none was given");
		_exit(127);
	}
	if (hostname && *hostname)
		sethostname(hostname, strlen(hostname));
	if (!prepared || value('N'))
		image_setup_network(value('N'), value('G'), value('D'));
	if (!value('T')) {
		/* Output to a pipe or file on the host: pass the program's bytes as they are (no \n -> \r\n)
		 * and do not echo what the host feeds in. */
		struct termios mode;
		if (tcgetattr(0, &mode) == 0) {
			mode.c_oflag &= ~OPOST;
			mode.c_lflag &= ~(ECHO | ECHONL);
			tcsetattr(0, TCSANOW, &mode);
		}
	}
	if (value('Y'))
		image_setup_terminal(value('Y'));
	if (config_fd >= 0)
		close(config_fd);
	if (workdir && *workdir) {
		mkdir(workdir, 0755); /* as runc does: a missing WorkingDir is created */
		if (chdir(workdir) != 0) {
			dprintf(2, "vireo-init: cannot enter working directory %s: %s\n", workdir, strerror(errno));
			_exit(126);
		}
	}
	if (image_apply_limits(values('R', NULL)) != 0)
		_exit(126);
	become_user(user);
	run_program(argv, envp);
}

int main(void)
{
	int console = open("/dev/console", O_RDWR | O_NOCTTY);
	if (console >= 0) {
		dup2(console, 0);
		dup2(console, 1);
		dup2(console, 2);
		if (console > 2)
			close(console);
	}
	warm = getenv("vireo_warm") != NULL;
	mount_at("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	int handoff = warm ? warm_listen(WARM_PORT) : -1;

	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		workload(handoff);
	}
	if (handoff >= 0)
		close(handoff);
	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		fail("pipe");
	struct sigaction action = {.sa_handler = on_signal};
	sigemptyset(&action.sa_mask);
	int forwarded[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
	for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
		sigaction(forwarded[i], &action, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	int listener = listen_for_signals();
	int agent = image_agent_listen(); /* `ctr task exec` (image-agent.c) */
	if (warm)
		message("ready");
	for (;;) {
		/* A missing listener (-1) is skipped by poll. */
		struct pollfd fds[3] = {{.fd = signal_pipe[0], .events = POLLIN}, {.fd = listener, .events = POLLIN},
		                        {.fd = agent, .events = POLLIN}};
		if (poll(fds, 3, -1) < 0 && errno != EINTR)
			fail("poll");
		if (listener >= 0 && (fds[1].revents & POLLIN))
			receive_signal(listener);
		if (agent >= 0 && (fds[2].revents & POLLIN))
			image_agent_accept(agent, child);
		unsigned char byte;
		while (read(signal_pipe[0], &byte, 1) == 1) {
			if (byte != SIGCHLD)
				kill(child, byte);
		}
		int wstatus;
		pid_t pid;
		while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
			/* orphans are reaped here too; only the program's status counts */
			if (pid == child)
				finish(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus));
		}
	}
	return 0;
}
