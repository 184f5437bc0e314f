import Foundation

/// Client of one VMM's control socket: one request line, one JSON reply line.
///
/// Requests run on a thread of their own, never on Swift concurrency's cooperative pool, because
/// a wedged VMM could otherwise hold a pool thread for the whole timeout.
struct VMMControl: Sendable {
    let socketPath: String

    /// Sends `command` (`status`, `pause`, `resume`, `stop`, `kill`) and returns the parsed reply.
    /// Throws the VMM's own error text for `{"ok":false,"error":…}`.
    func request(_ command: String, timeout: Double = 5) async throws -> JSONValue {
        let path = socketPath
        return try await runOnThread {
            let fd = try UnixSocket.connect(path, timeout: timeout)
            defer { close(fd) }
            try UnixSocket.sendAll(fd, Array((command + "\n").utf8))
            var rest: [UInt8] = []
            let line = try UnixSocket.readLine(fd, rest: &rest)
            let reply = try JSONParser.parse(line)
            guard reply["ok"]?.boolValue == true else {
                throw APIError.vmmUnavailable("the VMM refused '\(command)': \(reply["error"]?.stringValue ?? line)")
            }
            return reply
        }
    }

    /// True if the VMM answers `status` now.
    func isAnswering() -> Bool {
        guard let fd = try? UnixSocket.connect(socketPath, timeout: 1) else { return false }
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
