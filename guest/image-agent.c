/*
 * The image init's exec agent: runs more processes in the VM for the host (containerd's `ctr task
 * exec`, through containerd-shim-vireo-v2). PID 1 listens on vsock port 1026 once the program runs
 * and forks a handler per connection (nothing is forked until the host asks: a fork costs guest
 * kernel time, which PVM hosts emulate slowly); each connection is one process:
 *
 *   host -> guest  "VIREOEX1", u32 LE length N (at most 1 MiB), N bytes of records "<tag><value>\0":
 *                  A argv element (at least one), E "KEY=VALUE", W working directory, U "UID:GID",
 *                  R slot: a pod container's first process, rooted in that slot's disk; C slot: a
 *                  process in that (running) container's root (image-pod.c)
 *                  then frames: 'K' u32 LE 4, u32 LE signal number (sent to the process's group)
 *   guest -> host  frames: 'O' u32 LE length (at most 32 KiB) + output bytes (stdout and stderr),
 *                  last 'X' u32 LE 4, u32 LE exit status (128+N when killed by signal N)
 *
 * The process runs in a session of its own with stdin from /dev/null. The host closing the
 * connection kills its group. The host is not trusted with memory: lengths are bounded, records
 * must be NUL-terminated, counts are capped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "image-vsock.h"
#include "image-agent.h"
#include "image-pod.h"

#define AGENT_PORT 1026
#define AGENT_MAX_REQUEST (1 << 20)
#define AGENT_MAX_ITEMS 4096
#define AGENT_CHUNK 32768

extern char **environ;

/* The workload process: its root (the image's disk, which it moved over / and chrooted into) is
 * where exec'd processes run. PID 1 itself stays in the initramfs. */
static pid_t agent_workload;
/* A pod container's slot (record R): the process gets that disk as its root instead. */
static const char *agent_new_root;
/* Set for a pod container's processes (records R and C): they run with fewer capabilities. */
static int agent_pod_member;

/* Enters the workload's root through /proc/PID/root (proc is mounted in the initramfs on first use). */
static int agent_enter_root(void)
{
	char path[32];
	if (access("/proc/self", F_OK) != 0) {
		mkdir("/proc", 0555);
		if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 && errno != EBUSY)
			return -1;
	}
	snprintf(path, sizeof path, "/proc/%d/root", (int)agent_workload);
	return chroot(path) == 0 && chdir("/") == 0 ? 0 : -1;
}

/* Reads exactly `length` bytes, each wait bounded by `timeout_ms`; 0, or -1 on EOF, error or timeout. */
static int agent_read(int fd, void *buffer, size_t length, int timeout_ms)
{
	size_t done = 0;
	while (done < length) {
		struct pollfd wait_for = {.fd = fd, .events = POLLIN};
		if (poll(&wait_for, 1, timeout_ms) != 1)
			return -1;
		ssize_t got = read(fd, (char *)buffer + done, length - done);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		done += (size_t)got;
	}
	return 0;
}

static int agent_write(int fd, const void *buffer, size_t length)
{
	size_t done = 0;
	while (done < length) {
		ssize_t put = write(fd, (const char *)buffer + done, length - done);
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			return -1;
		done += (size_t)put;
	}
	return 0;
}

static uint32_t agent_u32(const unsigned char *bytes)
{
	return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24;
}

static int agent_frame(int fd, char type, const void *payload, uint32_t length)
{
	unsigned char header[5] = {(unsigned char)type, length & 0xff, length >> 8 & 0xff, length >> 16 & 0xff, length >> 24};
	return agent_write(fd, header, sizeof header) == 0 && agent_write(fd, payload, length) == 0 ? 0 : -1;
}

/* The child: the request's process, or 126/127 with one line on its output. */
static void agent_exec(char **argv, char **envp, const char *workdir, const char *user, int output)
{
	setsid();
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null >= 0)
		dup2(null, 0); /* dup2 clears close-on-exec on 0 only */
	dup2(output, 1);
	dup2(output, 2);
	if (agent_new_root ? pod_enter_new_root(agent_new_root) != 0 : agent_enter_root() != 0) {
		dprintf(2, "vireo-agent: cannot enter the image's root: %s\n", strerror(errno));
		_exit(126);
	}
	if (agent_pod_member)
		pod_drop_capabilities();
	if (workdir && *workdir && chdir(workdir) != 0) {
		dprintf(2, "vireo-agent: cannot enter %s: %s\n", workdir, strerror(errno));
		_exit(126);
	}
	if (user && *user) {
		char *end;
		unsigned long uid = strtoul(user, &end, 10);
		unsigned long gid = *end == ':' ? strtoul(end + 1, NULL, 10) : uid;
		if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0) {
			dprintf(2, "vireo-agent: cannot become %s: %s\n", user, strerror(errno));
			_exit(126);
		}
	}
	environ = envp; /* execvp searches the request's PATH */
	execvp(argv[0], argv);
	dprintf(2, "vireo-agent: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

/* Ends a request that cannot run with one line of output and status 126. */
static void agent_refuse(int connection, const char *text)
{
	unsigned char status[4] = {126, 0, 0, 0};
	agent_frame(connection, 'O', text, (uint32_t)strlen(text));
	agent_frame(connection, 'X', status, 4);
}

/* Pod records: R (a new container) gets a PID namespace of its own where the kernel has them;
 * C (exec into a container) joins that container's root and PID namespace. 0, or -1 after
 * answering the host. */
static int agent_pod_prepare(int connection, const char *container)
{
	if (agent_new_root) {
		if (!pod_valid_slot(agent_new_root) || container) {
			agent_refuse(connection, "vireo-agent: a bad pod slot in the request\n");
			return -1;
		}
		pod_new_pid_namespace();
		agent_pod_member = 1;
		return 0;
	}
	if (!container)
		return 0;
	pid_t first = pod_lookup(container);
	if (first <= 1 || kill(first, 0) != 0) {
		agent_refuse(connection, "vireo-agent: that container is not running\n");
		return -1;
	}
	agent_workload = first;
	agent_pod_member = 1;
	pod_join_pid_namespace(first);
	return 0;
}

/* One connection: read the request, run the process, stream its output, then its status. */
static void agent_serve(int connection)
{
	unsigned char header[12];
	if (agent_read(connection, header, sizeof header, 5000) != 0 || memcmp(header, "VIREOEX1", 8) != 0)
		return;
	uint32_t length = agent_u32(header + 8);
	if (length == 0 || length > AGENT_MAX_REQUEST)
		return;
	char *records = malloc(length);
	if (!records || agent_read(connection, records, length, 5000) != 0 || records[length - 1] != '\0')
		return;
	static char *argv[AGENT_MAX_ITEMS + 1], *envp[AGENT_MAX_ITEMS + 1];
	size_t argc = 0, envc = 0;
	const char *workdir = NULL, *user = NULL, *container = NULL;
	for (char *record = records; record < records + length; record += strlen(record) + 1) {
		switch (record[0]) {
		case 'A': if (argc < AGENT_MAX_ITEMS) argv[argc++] = record + 1; break;
		case 'E': if (envc < AGENT_MAX_ITEMS) envp[envc++] = record + 1; break;
		case 'W': workdir = record + 1; break;
		case 'U': user = record + 1; break;
		case 'R': agent_new_root = record + 1; break;
		case 'C': container = record + 1; break;
		default: break;
		}
	}
	argv[argc] = NULL;
	envp[envc] = NULL;
	if (argc == 0)
		return;
	if (agent_pod_prepare(connection, container) != 0)
		return;
	int output[2];
	if (pipe2(output, O_CLOEXEC) != 0)
		return;
	pid_t child = fork();
	if (child < 0)
		return;
	if (child == 0) {
		close(connection);
		close(output[0]);
		agent_exec(argv, envp, workdir, user, output[1]);
	}
	close(output[1]);
	if (agent_new_root)
		pod_record(agent_new_root, child);
	fcntl(output[0], F_SETFL, O_NONBLOCK);
	static char chunk[AGENT_CHUNK];
	int status = -1, output_open = 1;
	for (;;) {
		struct pollfd fds[2] = {{.fd = output[0], .events = POLLIN}, {.fd = connection, .events = POLLIN}};
		if (output_open)
			poll(fds, 2, 200);
		else
			poll(fds + 1, 1, 200);
		if (output_open && (fds[0].revents & (POLLIN | POLLHUP))) {
			ssize_t got = read(output[0], chunk, sizeof chunk);
			if (got > 0 && agent_frame(connection, 'O', chunk, (uint32_t)got) != 0)
				got = -2;
			if (got == 0)
				output_open = 0;
			if (got == -2) { /* the host went away */
				kill(-child, SIGKILL);
				output_open = 0;
			}
		}
		if (fds[1].revents & (POLLIN | POLLHUP)) {
			unsigned char frame[9];
			if (agent_read(connection, frame, sizeof frame, 1000) != 0) {
				kill(-child, SIGKILL); /* the host closed the connection */
			} else if (frame[0] == 'K' && agent_u32(frame + 1) == 4) {
				uint32_t number = agent_u32(frame + 5);
				if (number >= 1 && number <= 64)
					kill(-child, (int)number);
			}
		}
		int wstatus;
		if (status < 0 && waitpid(child, &wstatus, WNOHANG) == child)
			status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
		/* Done when the process has exited and its output is drained (or held open by an orphan: then
		 * what is buffered now is sent and the rest dropped). */
		if (status >= 0) {
			ssize_t got;
			while (output_open && (got = read(output[0], chunk, sizeof chunk)) > 0)
				agent_frame(connection, 'O', chunk, (uint32_t)got);
			unsigned char bytes[4] = {status & 0xff, 0, 0, 0};
			if (agent_new_root)
				pod_forget(agent_new_root);
			agent_frame(connection, 'X', bytes, 4);
			return;
		}
	}
}

int image_agent_listen(void)
{
	int listener = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (listener < 0)
		return -1;
	struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = AGENT_PORT};
	if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 8) != 0) {
		close(listener);
		return -1;
	}
	return listener;
}

void image_agent_accept(int listener, pid_t workload)
{
	agent_workload = workload;
	int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (connection < 0)
		return;
	pid_t handler = fork();
	if (handler == 0) {
		/* Undo what PID 1 set up for itself: its handlers, its blocked signals, its listeners. */
		for (int number = 1; number < NSIG; number++)
			signal(number, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		close(listener);
		agent_serve(connection);
		_exit(0);
	}
	close(connection); /* PID 1 reaps the handler with the other orphans */
}
