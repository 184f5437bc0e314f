import Foundation

/// Client of one VMM's control socket: one request line, one JSON reply line.
///
/// Requests run on a thread of their own, never on Swift concurrency's cooperative pool, because
/// a wedged VMM could otherwise hold a pool thread for the whole timeout.
struct VMMControl: Sendable {
    let socketPath: String
    /// The VMM's pid as the shim published it (in the daemon's own directory): the socket's peer
    /// must be that process or its child (the VMM under a `vireo run` supervisor). The socket lives
    /// where the VM's user writes, and a link there to another VM's socket must not steer requests.
    var expectedPID: Int32? = nil

    init(socketPath: String, expectedPID: Int32? = nil) {
        self.socketPath = socketPath
        self.expectedPID = expectedPID
    }

    /// Connects and checks the peer.
    static func connect(_ path: String, expecting pid: Int32?, timeout: Double) throws -> Int32 {
        let fd = try UnixSocket.connect(path, timeout: timeout)
        guard let pid else { return fd }
        guard let peer = UnixSocket.peerPID(fd), peer == pid || ProcessProbe.parentPID(of: peer) == pid else {
            close(fd)
            throw APIError.vmmUnavailable("the control socket \(path) is not served by this VM's VMM (pid \(pid))")
        }
        return fd
    }

    /// Sends `request` and returns the VMM's typed reply; throws the VMM's own error text for a refusal.
    func request(_ request: ControlRequest, timeout: Double = 5) async throws -> ControlReply {
        let path = socketPath, pid = expectedPID
        return try await runOnThread {
            let fd = try VMMControl.connect(path, expecting: pid, timeout: timeout)
            defer { close(fd) }
            try UnixSocket.sendAll(fd, Array((request.line + "\n").utf8))
            var rest: [UInt8] = []
            let line = try UnixSocket.readLine(fd, rest: &rest)
            let reply: ControlReply
            do {
                reply = try ControlReply.parse(line)
            } catch {
                throw APIError.vmmUnavailable("the VMM answered '\(request.line)' with something that is no reply (\(error)): \(line.prefix(200))")
            }
            guard reply.ok else {
                throw APIError.vmmUnavailable("the VMM refused '\(request.line)': \(reply.error ?? line)")
            }
            return reply
        }
    }

    /// True if the VMM answers `status` now.
    func isAnswering() -> Bool {
        guard let fd = try? VMMControl.connect(socketPath, expecting: expectedPID, timeout: 1) else { return false }
        close(fd)
        return true
    }
}

/// Runs blocking work on a new thread and resumes the caller with its result.
func runOnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
