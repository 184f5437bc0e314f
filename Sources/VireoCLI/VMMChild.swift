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

    static func run(_ arguments: [String], signalSocket: String?) throws -> Int32 {
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
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0, write(fd, "CONNECT \(port)\n"), readLine(fd)?.hasPrefix("OK") == true,
              write(fd, "\(signal)\n") else { return false }
        return readLine(fd) == "OK"
    }

    private static func write(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }

    /// One line, waiting at most 2 s.
    private static func readLine(_ fd: Int32) -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 64 {
            var wait = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&wait, 1, 2000) == 1, read(fd, &byte, 1) == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }
}
