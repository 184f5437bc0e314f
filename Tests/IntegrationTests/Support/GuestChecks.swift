import Foundation

/// The host's half of the test guest's checks (guest/init.c): the same checksum and pattern, the
/// result lines it prints, and echo servers that remember what they received.
enum GuestChecks {
    /// FNV-1a 64, as the guest computes it.
    static func fnv<Bytes: Sequence>(_ bytes: Bytes, start: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where Bytes.Element == UInt8 {
        var hash = start
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The guest's pattern: xorshift64 from `2·seed + 1` (odd, distinct per seed), little-endian words.
    static func pattern(count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 2 &+ 1
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            withUnsafeBytes(of: x.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return Array(bytes.prefix(count))
    }

    /// The `key=value` words of the first console line starting with `prefix` (e.g. "VIREO-BLK ok"),
    /// or nil when there is none. Quoted values keep their spaces.
    static func result(_ output: String, _ prefix: String) -> [String: String]? {
        guard let line = output.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix(prefix + " ") || $0 == prefix }) else {
            return nil
        }
        var fields: [String: String] = [:]
        var rest = Substring(line.dropFirst(prefix.count))
        while let equals = rest.firstIndex(of: "=") {
            let key = rest[..<equals].split(separator: " ").last.map(String.init) ?? ""
            var value = rest[rest.index(after: equals)...]
            if value.first == "\"", let close = value.dropFirst().firstIndex(of: "\"") {
                fields[key] = String(value[value.index(after: value.startIndex)..<close])
                rest = value[value.index(after: close)...]
            } else {
                let end = value.firstIndex(of: " ") ?? value.endIndex
                fields[key] = String(value[..<end])
                value = value[end...]
                rest = value
            }
        }
        return fields
    }

    /// Lines of the console that report a failed check.
    static func failures(_ output: String) -> [String] {
        output.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("VIREO-") && $0.contains(" FAIL") }.map(String.init)
    }
}

/// An echo server on a TCP port (all addresses) or a Unix socket path: every connection gets its
/// bytes back; the FNV-1a of what each connection sent is kept, in order of completion.
final class EchoServer: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    let path: String?
    private let lock = NSLock()
    private var hashes: [(bytes: Int, fnv: UInt64)] = []

    /// TCP on an ephemeral port: passt maps the guest's gateway address to the host's loopback.
    convenience init(port: UInt16 = 0) throws { try self.init(unixPath: nil, port: port) }

    init(unixPath: String?, port requested: UInt16 = 0) throws {
        path = unixPath
        let fd: Int32
        if let unixPath {
            fd = try UnixSocket.listen(unixPath)
            port = 0
        } else {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = requested.bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { close(fd); throw UnixSocket.Failure(description: "TCP listen failed: errno \(errno)") }
            port = UInt16(bigEndian: address.sin_port)
        }
        self.fd = fd
        let listener = fd
        Thread.detachNewThread { [weak self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }  // closed in deinit
                guard let server = self else { close(client); return }
                Thread.detachNewThread { server.echo(client) }
            }
        }
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        if let path { unlink(path) }
    }

    private func echo(_ client: Int32) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            hash = GuestChecks.fnv(buffer[0..<n], start: hash)
            total += n
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { write(client, $0.baseAddress! + sent, n - sent) }
                if m <= 0 { break }
                sent += m
            }
        }
        close(client)
        lock.lock(); hashes.append((total, hash)); lock.unlock()
    }

    /// The connections finished so far: bytes and FNV-1a of what each sent.
    var received: [(bytes: Int, fnv: UInt64)] {
        lock.lock(); defer { lock.unlock() }
        return hashes
    }
}
