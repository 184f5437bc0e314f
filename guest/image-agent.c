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
 *                  T "ROWS COLUMNS" (run on a pty; 0 0: size unknown yet), I (empty: stdin comes in
 *                  'I' frames; without it stdin is /dev/null)
 *                  then frames, type + u32 LE length + payload (at most 32 KiB):
 *                  'K' 4: u32 LE signal number (sent to the process's group); 'R' 8: u32 LE rows,
 *                  u32 LE columns (the pty's new size); 'I' n: stdin bytes; 'C' 0: stdin closed
 *   guest -> host  frames: 'O' u32 LE length (at most 32 KiB) + output bytes (stdout and stderr),
 *                  last 'X' u32 LE 4, u32 LE exit status (128+N when killed by signal N)
 *
 * The process runs in a session of its own: on a pty (T) that is its controlling terminal, in the
 * workload's devpts; else stdout and stderr are one pipe and stdin a pipe (I) or /dev/null. Stdin
 * bytes are written as the process reads them: while a frame waits, no more frames are read. The
 * host closing the connection kills its group. The host is not trusted with memory: lengths are
 * bounded, records must be NUL-terminated, counts are capped.
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
#include <sys/ioctl.h>
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

/* proc in the initramfs (mounted on first use), for /proc/PID/root. */
static int agent_mount_proc(void)
{
	if (access("/proc/self", F_OK) != 0) {
		mkdir("/proc", 0555);
		if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 && errno != EBUSY)
			return -1;
	}
	return 0;
}

/* Enters the workload's root through /proc/PID/root. */
static int agent_enter_root(void)
{
	char path[32];
	if (agent_mount_proc() != 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/root", (int)agent_workload);
	return chroot(path) == 0 && chdir("/") == 0 ? 0 : -1;
}

/* A pty in the workload's devpts (its /dev/pts, mounted by the init): the master, and the slave's
 * number in *number; -1 when there is none. */
static int agent_open_pty(unsigned rows, unsigned columns, int *number)
{
	char path[64];
	if (agent_mount_proc() != 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%d/root/dev/pts/ptmx", (int)agent_workload);
	int master = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	int unlock = 0;
	if (master < 0)
		return -1;
	if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCGPTN, number) != 0) {
		close(master);
		return -1;
	}
	if (rows > 0 && columns > 0 && rows <= 65535 && columns <= 65535) {
		struct winsize window = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
		ioctl(master, TIOCSWINSZ, &window);
	}
	return master;
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

/* The child: the request's process, or 126/127 with one line on its output. `pty` >= 0: its stdio
 * is that pty's slave (the controlling terminal); else `input` (-1: /dev/null) and `output`. */
static void agent_exec(char **argv, char **envp, const char *workdir, const char *user, int input, int output, int pty)
{
	setsid();
	signal(SIGPIPE, SIG_DFL); /* the handler ignores it; an ignored signal would stay ignored across exec */
	if (pty >= 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/root/dev/pts/%d", (int)agent_workload, pty);
		int slave = open(path, O_RDWR); /* a session leader without a terminal: this one becomes it */
		if (slave < 0)
			_exit(126);
		ioctl(slave, TIOCSCTTY, 0);
		input = output = slave;
	}
	if (input < 0)
		input = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (input >= 0)
		dup2(input, 0); /* dup2 clears close-on-exec on the copies */
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
	const char *workdir = NULL, *user = NULL, *container = NULL, *terminal = NULL;
	int streams_input = 0;
	for (char *record = records; record < records + length; record += strlen(record) + 1) {
		switch (record[0]) {
		case 'A': if (argc < AGENT_MAX_ITEMS) argv[argc++] = record + 1; break;
		case 'E': if (envc < AGENT_MAX_ITEMS) envp[envc++] = record + 1; break;
		case 'W': workdir = record + 1; break;
		case 'U': user = record + 1; break;
		case 'R': agent_new_root = record + 1; break;
		case 'C': container = record + 1; break;
		case 'T': terminal = record + 1; break;
		case 'I': streams_input = 1; break;
		default: break;
		}
	}
	argv[argc] = NULL;
	envp[envc] = NULL;
	if (argc == 0)
		return;
	if (agent_pod_prepare(connection, container) != 0)
		return;
	/* out: what the host's 'O' frames carry; in: where 'I' frames go (-1: stdin is /dev/null). */
	int out = -1, in = -1, pty = -1, child_input = -1, child_output = -1;
	if (terminal) {
		unsigned rows = 0, columns = 0;
		sscanf(terminal, "%u %u", &rows, &columns);
		out = in = agent_open_pty(rows, columns, &pty);
		if (out < 0) {
			static const char refused[] = "vireo-agent: cannot open a pty in the image's /dev/pts\n";
			unsigned char bytes[4] = {126, 0, 0, 0};
			agent_frame(connection, 'O', refused, sizeof refused - 1);
			agent_frame(connection, 'X', bytes, 4);
			return;
		}
	} else {
		int output[2], input[2] = {-1, -1};
		if (pipe2(output, O_CLOEXEC) != 0 || (streams_input && pipe2(input, O_CLOEXEC) != 0))
			return;
		out = output[0];
		child_output = output[1];
		in = input[1];
		child_input = input[0];
	}
	pid_t child = fork();
	if (child < 0)
		return;
	if (child == 0) {
		close(connection);
		close(out);
		if (in >= 0 && in != out)
			close(in);
		agent_exec(argv, envp, workdir, user, child_input, child_output, pty);
	}
	if (child_output >= 0)
		close(child_output);
	if (child_input >= 0)
		close(child_input);
	if (agent_new_root)
		pod_record(agent_new_root, child);
	fcntl(out, F_SETFL, O_NONBLOCK);
	if (in >= 0)
		fcntl(in, F_SETFL, O_NONBLOCK);
	static char chunk[AGENT_CHUNK], pending[AGENT_CHUNK];
	size_t pending_length = 0, pending_done = 0;
	int status = -1, output_open = 1, connection_open = 1;
	for (;;) {
		/* While stdin bytes wait for the process, the connection is not read (a negative fd is skipped). */
		struct pollfd fds[3] = {{.fd = output_open ? out : -1, .events = POLLIN},
		                        {.fd = connection_open && pending_length == 0 ? connection : -1, .events = POLLIN},
		                        {.fd = pending_length > 0 ? in : -1, .events = POLLOUT}};
		poll(fds, 3, 200);
		if (output_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t got = read(out, chunk, sizeof chunk);
			if (got > 0 && agent_frame(connection, 'O', chunk, (uint32_t)got) != 0) { /* the host went away */
				kill(-child, SIGKILL);
				output_open = connection_open = 0;
			}
			if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) /* a pty's master: EIO once the slave is gone */
				output_open = 0;
		}
		if (pending_length > 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t put = write(in, pending + pending_done, pending_length - pending_done);
			if (put > 0)
				pending_done += (size_t)put;
			if ((put < 0 && errno != EAGAIN && errno != EINTR) || pending_done == pending_length)
				pending_length = pending_done = 0; /* written, or the process closed its stdin: dropped */
		}
		if (connection_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			unsigned char frame[5];
			uint32_t size = 0;
			if (agent_read(connection, frame, sizeof frame, 1000) != 0 || (size = agent_u32(frame + 1)) > AGENT_CHUNK ||
			    agent_read(connection, chunk, size, 1000) != 0) {
				kill(-child, SIGKILL); /* the host closed the connection, or broke the protocol */
				connection_open = 0;
			} else if (frame[0] == 'K' && size == 4) {
				uint32_t number = agent_u32((unsigned char *)chunk);
				if (number >= 1 && number <= 64)
					kill(-child, (int)number);
			} else if (frame[0] == 'R' && size == 8 && pty >= 0) {
				uint32_t rows = agent_u32((unsigned char *)chunk), columns = agent_u32((unsigned char *)chunk + 4);
				struct winsize window = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
				if (rows > 0 && columns > 0 && rows <= 65535 && columns <= 65535)
					ioctl(out, TIOCSWINSZ, &window); /* the kernel sends the foreground group SIGWINCH */
			} else if (frame[0] == 'I' && in >= 0 && size > 0) {
				memcpy(pending, chunk, size);
				pending_length = size;
				pending_done = 0;
			} else if (frame[0] == 'C' && in >= 0 && in != out) {
				close(in); /* the process reads EOF */
				in = -1;
			}
		}
		int wstatus;
		if (status < 0 && waitpid(child, &wstatus, WNOHANG) == child)
			status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
		/* Done when the process has exited and its output is drained (or held open by an orphan: then
		 * what is buffered now is sent and the rest dropped). */
		if (status >= 0) {
			ssize_t got;
			while (output_open && (got = read(out, chunk, sizeof chunk)) > 0)
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
		signal(SIGPIPE, SIG_IGN); /* a process that closed its stdin is an error from write, not a kill */
		close(listener);
		agent_serve(connection);
		_exit(0);
	}
	close(connection); /* PID 1 reaps the handler with the other orphans */
}
