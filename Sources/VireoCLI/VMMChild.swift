import Foundation
import Images

/// Runs this same binary as a child (`vireo run …`) with our stdio and returns its exit status
/// (128+N when killed by signal N). SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to us go to the image's
/// program through the guest init's vsock port; a second one, or one the guest cannot take yet
/// (still booting, no vsock), stops the VM instead.
enum VMMChild {
    nonisolated(unsafe) private static var child: pid_t = 0
    nonisolated(unsafe) private static var signalWriteFD: Int32 = -1
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    /// `started` is called with the VMM's pid once it runs (the warm start's hand-off begins there).
    static func run(_ arguments: [String], signalSocket: String?, started: ((pid_t) -> Void)? = nil) throws -> Int32 {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw ImageError("pipe: \(String(cString: strerror(errno)))") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        signalWriteFD = fds[1]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        if isatty(0) == 0 {
            // Not on a terminal: a group of its own, so a terminal's ^C reaches only us (and the
            // program through us). On a terminal the VMM must stay in the foreground group to read
            // it; the terminal is raw then, and ^C travels as a byte to the program's console.
            posix_spawnattr_setpgroup(&attributes, 0)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        }
        // setpriv (util-linux) gives the VMM a parent-death signal: if this process is killed, the VM
        // stops instead of running on as an orphan.
        let vireo = try ownExecutable()
        let candidates: [String] = ["/usr/bin/setpriv", "/bin/setpriv"]
        let setpriv = candidates.first { access($0, X_OK) == 0 }
        let command = (setpriv.map { [$0, "--pdeathsig", "TERM", "--", vireo] } ?? [vireo]) + arguments
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], nil, &attributes, argv, environ)
        guard result == 0 else { throw ImageError("cannot start the VMM: \(String(cString: strerror(result)))") }
        child = pid
        let vmm = pid
        started?(pid)
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in forwarded {
            Glibc.signal(signal) { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = write(VMMChild.signalWriteFD, &byte, 1)
            }
            sigaddset(&unblock, signal)
        }
        // Whoever started us may have left these blocked (the VMM, spawned above, keeps that mask).
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let readFD = fds[0]
        let forwarder = Thread {
            var delivered = 0
            var byte: UInt8 = 0
            while read(readFD, &byte, 1) == 1 {
                let number = Int32(byte)
                if delivered == 0, let signalSocket, GuestSignal.send(number, socket: signalSocket) {
                    delivered += 1
                } else {
                    kill(vmm, SIGTERM)  // the VMM stops the VM
                }
            }
        }
        forwarder.start()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw ImageError("waitpid: \(String(cString: strerror(errno)))") }
        }
        for signal in forwarded { Glibc.signal(signal, SIG_DFL) }
        child = 0
        let low = status & 0x7f
        return low == 0 ? (status >> 8) & 0xff : 128 + low
    }
}

extension VMMChild {
    /// This binary's path (the child runs it as `vireo run`).
    static func ownExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { throw ImageError("cannot find the vireo binary: \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Delivers a signal number to guest/image-init.c over the VM's vsock (Firecracker's host-initiated
/// protocol: `CONNECT 1024\n`, then `OK <port>\n`, then the stream).
enum GuestSignal {
    static let port = 1024

    static func send(_ signal: Int32, socket path: String) -> Bool {
        guard let connection = UnixLineSocket(path: path) else { return false }
        defer { connection.close() }
        guard connection.write("CONNECT \(port)\n"), connection.readLine(timeout: 2, limit: 64)?.hasPrefix("OK") == true,
              connection.write("\(signal)\n") else { return false }
        return connection.readLine(timeout: 2, limit: 64) == "OK"
    }
}
