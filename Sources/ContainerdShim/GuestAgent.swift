import Foundation

/// The host side of the image init's exec agent (guest/image-agent.c, vsock port 1026), reached
/// through the VM's vsock Unix socket with Firecracker's `CONNECT <port>` hand-shake. The guest is
/// not trusted: frames are bounded, and a connection that breaks the protocol ends the process with
/// status 255.
enum GuestAgent {
    static let port = 1026
    static let maximumOutputFrame = 1 << 16

    /// The vsock socket of the VM `vireo` (pid) runs: its run directory is `runs/<pid>-<random>`.
    static func socket(stateDirectory: String, vireo pid: pid_t) -> String? {
        let runs = stateDirectory + "/images/runs"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: runs) else { return nil }
        return entries.first { $0.hasPrefix("\(pid)-") }.map { "\(runs)/\($0)/signal.sock" }
    }

    /// Connects to the agent (retrying while the guest is still starting, up to `seconds`) and sends
    /// the request; the connection's fd. `terminal`: run on a pty of that size (rows, columns; 0 0
    /// when not known yet); `streamsInput`: stdin follows in 'I' frames (else it is /dev/null).
    static func start(socket path: String, process: OCIBundle.Process, terminal: (rows: UInt32, columns: UInt32)? = nil,
                      streamsInput: Bool = false, records extra: [(Character, String)] = [], seconds: Double = 60) throws -> Int32 {
        var records: [UInt8] = []
        func add(_ tag: Character, _ value: String) { records += Array(String(tag).utf8) + Array(value.utf8) + [0] }
        for argument in process.args ?? [] { add("A", argument) }
        for variable in process.env ?? [] { add("E", variable) }
        if let cwd = process.cwd, !cwd.isEmpty { add("W", cwd) }
        add("U", "\(process.user?.uid ?? 0):\(process.user?.gid ?? 0)")
        for (tag, value) in extra { add(tag, value) }  // R/C: a pod container's root (guest/image-pod.c)
        if let terminal { add("T", "\(terminal.rows) \(terminal.columns)") }
        if streamsInput { add("I", "") }
        guard records.count <= 1 << 20 else { throw ShimError(ShimError.invalidArgument, "the exec's args and env exceed 1 MiB") }
        let deadline = Date().addingTimeInterval(seconds)
        var lastError = "no attempt"
        while Date() < deadline {
            do {
                let fd = try UnixSocket.connect(path)
                if try handshake(fd) {
                    let length = UInt32(records.count)
                    let request = Array("VIREOEX1".utf8) + [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 24)] + records
                    try writeAll(fd, request)
                    return fd
                }
                close(fd)
                lastError = "the guest's agent is not listening (yet)"
            } catch {
                lastError = "\(error)"
            }
            usleep(250_000)
        }
        throw ShimError(ShimError.internal, "vireo: cannot reach the guest's exec agent: \(lastError)")
    }

    /// `CONNECT 1026\n` → `OK <port>\n` (the VMM closes the connection when nothing listens).
    private static func handshake(_ fd: Int32) throws -> Bool {
        try writeAll(fd, Array("CONNECT \(port)\n".utf8))
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 64 {
            guard read(fd, &byte, 1) == 1 else { return false }
            if byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        timeout = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return line.starts(with: Array("OK".utf8))
    }

    /// Copies output frames to `output` until the exit frame; the process's status (255 when the
    /// connection broke or the guest broke the protocol).
    static func relay(_ fd: Int32, to output: Int32) -> UInt32 {
        var header = [UInt8](repeating: 0, count: 5)
        var payload = [UInt8](repeating: 0, count: maximumOutputFrame)
        while readAll(fd, &header, header.count) {
            let length = Int(header[1]) | Int(header[2]) << 8 | Int(header[3]) << 16 | Int(header[4]) << 24
            guard length <= maximumOutputFrame, readAll(fd, &payload, length) else { break }
            switch header[0] {
            case UInt8(ascii: "O"): _ = try? writeAll(output, Array(payload[0..<length]))
            case UInt8(ascii: "X") where length == 4: return UInt32(payload[0])
            default: return 255
            }
        }
        return 255
    }

    /// Asks the agent to send `signal` to the process's group.
    static func signal(_ fd: Int32, _ signal: UInt32) {
        _ = try? frame(fd, "K", littleEndian(signal))
    }

    /// A host -> guest frame: 'K' signal, 'R' rows + columns, 'I' stdin bytes (at most 32 KiB), 'C' stdin closed.
    static func frame(_ fd: Int32, _ type: Character, _ payload: [UInt8]) throws {
        let length = UInt32(payload.count)
        try writeAll(fd, [UInt8(ascii: type.unicodeScalars.first!)] + littleEndian(length) + payload)
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xff), UInt8(value >> 8 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 24)]
    }

    private static func readAll(_ fd: Int32, _ buffer: inout [UInt8], _ length: Int) -> Bool {
        var offset = 0
        while offset < length {
            let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, length - offset) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return false }
            offset += got
        }
        return true
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let put = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if put < 0 && errno == EINTR { continue }
            guard put > 0 else { throw ShimError(ShimError.internal, "write: \(String(cString: strerror(errno)))") }
            offset += put
        }
    }
}
