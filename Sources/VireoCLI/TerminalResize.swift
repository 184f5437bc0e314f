import Foundation
import Images

/// `vireo run --image -t`: when the host terminal changes size (SIGWINCH), the new size goes to the
/// guest init over vsock ("W ROWS COLUMNS" on port 1024), which resizes the program's console. A size
/// the guest cannot take yet (still restoring or booting) is retried every 250 ms, for a minute.
/// The size the config disk carried counts as sent: a change before the handler was in place (the
/// containerd shim resizes right after Start) is caught by the first comparison.
enum TerminalResize {
    nonisolated(unsafe) private static var wakeFD: Int32 = -1

    static func start(socket: String, sent initial: RunSpec.TerminalSize?) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        wakeFD = fds[1]
        let readFD = fds[0]
        Glibc.signal(SIGWINCH) { _ in
            var byte: UInt8 = 1
            _ = write(TerminalResize.wakeFD, &byte, 1)
        }
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGWINCH)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        Thread.detachNewThread {
            var sent = initial
            var tries = 0
            var pending = true  // compare once at start
            while true {
                var wait = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
                if poll(&wait, 1, pending ? 250 : -1) > 0 {
                    var drain = [UInt8](repeating: 0, count: 64)
                    while read(readFD, &drain, drain.count) > 0 {}
                    pending = true
                    tries = 0
                }
                guard pending, let size = HostTerminal.size() else { pending = false; continue }
                if size == sent || GuestSignal.resize(size, socket: socket) {
                    sent = size
                    pending = false
                } else {
                    tries += 1
                    if tries >= 240 { pending = false }
                }
            }
        }
    }
}

extension GuestSignal {
    /// Sets the program's console size (guest/image-init.c, port 1024); false when the guest did not take it.
    static func resize(_ size: RunSpec.TerminalSize, socket path: String) -> Bool {
        guard let connection = UnixLineSocket(path: path) else { return false }
        defer { connection.close() }
        guard connection.write("CONNECT \(port)\n"), connection.readLine(timeout: 2, limit: 64)?.hasPrefix("OK") == true,
              connection.write("W \(size.rows) \(size.columns)\n") else { return false }
        return connection.readLine(timeout: 2, limit: 64) == "OK"
    }
}
