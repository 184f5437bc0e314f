internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// The VMM's private control socket (`--api-socket`): one request line (`ControlRequest`), one JSON
/// reply line (`ControlReply`, the type the manager decodes).
///
/// Requests: `status` (with the virtio devices' counters), `pause`, `resume`, `balloon <MiB>`
/// (the balloon's target), `stop` (clean stop: vCPUs stopped, exit 0), `kill`
/// (the process ends at once), `attach-disk ID` / `detach-disk ID` (hot attach to an empty disk
/// slot, the backing passed as descriptors with the request: Machine+HotDisks), and `console`, which turns the connection into the guest's serial
/// console (bytes in go to the UART, console output streams out). A daemon uses it to drive one VM.
final class ControlServer: Sendable {
    private let path: String
    private let listenFD: Int32
    private unowned let machine: Machine
    /// The isolation the VMM runs under, for `status`.
    private let isolation: IsolationPlan?

    init(path: String, machine: Machine, isolation: IsolationPlan?) throws(VMMError) {
        self.path = path
        self.machine = machine
        self.isolation = isolation
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .invalidConfiguration("--api-socket path is too long (\(bytes.count) bytes; the limit is 107)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .file(path: path, what: "cannot create the API socket", errno: errno) }
        unlink(path)  // a stale socket from a crashed VMM
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let error = errno
            close(fd)
            throw .file(path: path, what: "cannot listen on the API socket", errno: error)
        }
        listenFD = fd
    }

    /// Serves connections on a thread of its own until the process ends.
    func start() {
        _ = OSThread(name: "vireo-api") { [self] in
            while true {
                let client = accept(listenFD, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return
                }
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                _ = OSThread(name: "vireo-api-client") { [self] in serve(client) }
            }
        }
    }

    /// Removes the socket file (the VM is gone).
    func remove() { unlink(path) }

    /// The most descriptors one connection holds for its next `attach-disk` (it takes three).
    static let maximumPassed = 8

    private func serve(_ fd: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        // Descriptors passed with the bytes (SCM_RIGHTS) for the next `attach-disk`; any other
        // request closes them, and never more than `maximumPassed` are held.
        var passed: [Int32] = []
        defer { for descriptor in passed { close(descriptor) } }
        while true {
            var received = [Int32](repeating: -1, count: Self.maximumPassed)
            var receivedCount: Int32 = 0
            // A message with more descriptors than that is refused whole (its descriptors closed)
            // and ends the connection.
            let count = chunk.withUnsafeMutableBytes { bytes in
                received.withUnsafeMutableBufferPointer {
                    csys_receive_fds(fd, bytes.baseAddress, bytes.count, $0.baseAddress, Int32(Self.maximumPassed), &receivedCount)
                }
            }
            for descriptor in received.prefix(Int(receivedCount)) {
                if passed.count < Self.maximumPassed { passed.append(descriptor) } else { close(descriptor) }
            }
            if count <= 0 { break }
            buffer.append(contentsOf: chunk[0..<count])
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self).trimmingCharacters(in: "\r")
                buffer.removeSubrange(...newline)
                let request = ControlRequest(line: line)
                if request == .console {
                    reply(fd, ControlReply(ok: true, console: true))
                    streamConsole(fd, pending: buffer)
                    close(fd)
                    return
                }
                if case let .attachDisk(id)? = request {
                    let descriptors = passed
                    passed = []
                    reply(fd, machine.attachDisk(id: id, descriptors: descriptors))
                    continue
                }
                for descriptor in passed { close(descriptor) }
                passed = []
                reply(fd, request.map(handle) ?? ControlServer.unknown(line))
                if request == .kill { kill(getpid(), SIGKILL) }
            }
            if buffer.count > 4096 { break }  // no request is that long
        }
        close(fd)
    }

    private func handle(_ request: ControlRequest) -> ControlReply {
        switch request {
        case .status:
            return ControlReply(ok: true, status: machine.status(isolation: isolation))
        case .pause:
            do {
                try machine.pause()
            } catch {
                return .failure(error.description, state: machine.stateName)
            }
            return ControlReply(ok: true, state: machine.stateName)
        case .resume:
            machine.resume()
            return ControlReply(ok: true, state: machine.stateName)
        case .stop:
            machine.control.stop(.requested)
            return ControlReply(ok: true, state: "stopping")
        case .kill:
            return ControlReply(ok: true, state: "killed")
        case let .balloon(argument):
            return machine.setBalloonTarget(argument)
        case let .snapshot(directory):
            let started = MonotonicClock.now()
            do {
                try machine.snapshot(to: directory)
            } catch {
                return .failure(error.description)
            }
            return ControlReply(ok: true, snapshot: directory, ms: Int((MonotonicClock.now() - started) * 1000))
        case let .detachDisk(id):
            return machine.detachDisk(id: id)
        case .console, .attachDisk:
            return .failure("served by the connection loop")  // never reached
        }
    }

    private static func unknown(_ line: String) -> ControlReply {
        .failure("unknown request '\(printable(line))'; expected status, pause, resume, snapshot DIR, balloon MIB, stop, kill, console, attach-disk ID or detach-disk ID")
    }

    /// A client's text for a reply: 64 characters at most, letters, digits, space, '-' and '_' kept.
    static func printable(_ text: String) -> String {
        String(text.prefix(64).map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == " " || $0 == "-" || $0 == "_") ? $0 : "?" })
    }

    private func reply(_ fd: Int32, _ message: ControlReply) {
        var line = message.line + "\n"
        line.withUTF8 { bytes in _ = ConsoleOutput.writeAll(fd, UnsafeRawBufferPointer(bytes), nonBlocking: false) }
    }

    /// Bidirectional console: output via ConsoleOutput fan-out, input fed to the UART.
    private func streamConsole(_ fd: Int32, pending: [UInt8]) {
        machine.console.attach(fd)
        defer { machine.console.detach(fd) }
        let serial = machine.devices.serial
        func deliver(_ bytes: ArraySlice<UInt8>) {
            var rest = bytes
            while !rest.isEmpty && !machine.control.isStopping {
                let taken = serial.receive(rest)
                rest = rest.dropFirst(taken)
                if taken == 0 { usleep(1000) }
            }
        }
        deliver(pending[...])
        var chunk = [UInt8](repeating: 0, count: 256)
        while !machine.control.isStopping {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            deliver(chunk[0..<count])
        }
    }
}
