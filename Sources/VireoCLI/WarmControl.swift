import Foundation
import Images

/// One request on a VMM's control socket (`--api-socket`): `pause`, `resume`, `snapshot DIR`, ….
enum WarmControl {
    /// Sends `request`; returns the reply, or throws unless it says `"ok":true`.
    @discardableResult
    static func request(_ socket: String, _ request: String, timeout: Double = 120) throws -> String {
        guard let connection = UnixLineSocket(path: socket) else { throw ImageError("cannot reach the VMM's control socket \(socket)") }
        defer { connection.close() }
        guard connection.write(request + "\n"), let reply = connection.readLine(timeout: timeout) else {
            throw ImageError("the VMM did not answer '\(request)'")
        }
        guard reply.contains("\"ok\":true") else { throw ImageError("'\(request)' failed: \(reply)") }
        return reply
    }
}
