#if canImport(Glibc)
import Glibc
#endif

/// A daemon reply: status, headers, body.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// The body as JSON, if it is.
    public var json: JSONValue? { try? JSONParser.parse(body) }

    /// The message of an API error body, or the status line.
    public var errorMessage: String {
        json?["error"]?["message"]?.stringValue ?? "HTTP \(status): \(text.prefix(200))"
    }
}

/// Why the client could not talk to the daemon.
public enum ClientError: Error, CustomStringConvertible {
    case daemonNotRunning(socket: String, reason: String)
    case connection(String)

    public var description: String {
        switch self {
        case let .daemonNotRunning(socket, reason):
            return "cannot reach the Vireo daemon at \(socket) (\(reason)): is it running? Start it with 'vireo serve' (as root), or point to its socket with --socket PATH or VIREO_SOCKET"
        case let .connection(message):
            return message
        }
    }
}

/// A minimal blocking HTTP/1.1 client over the daemon's Unix socket (one request per connection):
/// enough for the CLI and tests, without an HTTP client library's build cost.
public struct UnixHTTPClient: Sendable {
    public let socketPath: String

    public init(socketPath: String) { self.socketPath = socketPath }

    /// Sends one request and reads the whole reply.
    public func send(_ method: String, _ path: String, body: [UInt8]? = nil, timeout: Double = 300) throws -> HTTPReply {
        let connection = try open(method, path, body: body, timeout: timeout)
        defer { connection.close() }
        let (status, headers) = try connection.readHead()
        var data: [UInt8] = []
        while let chunk = try connection.readBody() { data += chunk }
        return HTTPReply(status: status, headers: headers, body: data)
    }

    /// Sends a JSON body.
    public func send(_ method: String, _ path: String, json: JSONValue, timeout: Double = 300) throws -> HTTPReply {
        try send(method, path, body: Array(json.serialized().utf8), timeout: timeout)
    }

    /// Sends one request and hands the reply body to `onData` as it arrives, until it ends or
    /// `onData` returns false. Returns the head; a non-2xx reply's body comes back whole instead.
    public func stream(_ method: String, _ path: String, onData: ([UInt8]) -> Bool) throws -> HTTPReply {
        let connection = try open(method, path, body: nil, timeout: 0)
        defer { connection.close() }
        let (status, headers) = try connection.readHead()
        guard (200..<300).contains(status) else {
            var data: [UInt8] = []
            while let chunk = try connection.readBody() { data += chunk }
            return HTTPReply(status: status, headers: headers, body: data)
        }
        while let chunk = try connection.readBody() {
            if !chunk.isEmpty, !onData(chunk) { break }
        }
        return HTTPReply(status: status, headers: headers, body: [])
    }

    /// Starts a request whose body is streamed in chunks (the console): write with `sendChunk`,
    /// end with `finishBody`, read the reply with `readHead`/`readBody`.
    public func openDuplex(_ method: String, _ path: String) throws -> HTTPConnection {
        let fd = try connect(timeout: 0)
        let head = "\(method) \(path) HTTP/1.1\r\nHost: vireo\r\nUser-Agent: vireo-cli\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        let connection = HTTPConnection(fd: fd)
        try connection.write(Array(head.utf8))
        return connection
    }

    private func connect(timeout: Double) throws -> Int32 {
        do {
            return try UnixSocket.connect(socketPath, timeout: timeout)
        } catch let error where error.isNotListening || error.code == EACCES {
            throw ClientError.daemonNotRunning(socket: socketPath, reason: String(cString: strerror(error.code)))
        } catch {
            throw ClientError.connection("cannot connect to \(socketPath): \(error)")
        }
    }

    private func open(_ method: String, _ path: String, body: [UInt8]?, timeout: Double) throws -> HTTPConnection {
        let fd = try connect(timeout: timeout)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: vireo\r\nUser-Agent: vireo-cli\r\nConnection: close\r\n"
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        } else if method == "POST" || method == "PUT" || method == "PATCH" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        let connection = HTTPConnection(fd: fd)
        do {
            try connection.write(Array(head.utf8) + (body ?? []))
        } catch {
            connection.close()
            throw error
        }
        return connection
    }
}

/// One HTTP/1.1 exchange on a connected socket: writes the request, reads the reply incrementally
/// (Content-Length, chunked, or until the server closes).
/// @unchecked Sendable: One exchange belongs to the one caller that made the request and reads it to its end; its parse state is never shared between threads.
public final class HTTPConnection: @unchecked Sendable {
    public let fd: Int32
    private var buffer: [UInt8] = []
    private var remaining: Int?  // Content-Length bytes left
    private var chunked = false
    private var chunkLeft = 0
    private var finished = false
    private var closed = false
    /// The daemon replied before reading the whole request.
    private var answeredEarly = false

    init(fd: Int32) { self.fd = fd }

    /// Writes request bytes. If the daemon answers before it has read them all (a 413 for a body
    /// over the limit), the rest is dropped and the answer is left to be read, as curl does.
    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count, !answeredEarly {
            var poller = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
            let ready = poll(&poller, 1, -1)
            if ready < 0 { if errno == EINTR { continue }; throw ClientError.connection("poll: \(String(cString: strerror(errno)))") }
            if poller.revents & Int16(POLLIN) != 0 && poller.revents & Int16(POLLOUT) == 0 {
                answeredEarly = true
                break
            }
            let sent = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if sent < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                if errno == EPIPE || errno == ECONNRESET { answeredEarly = true; break }
                throw ClientError.connection("the daemon closed the connection: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    /// Sends one chunk of a chunked request body.
    public func sendChunk(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        try write(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [13, 10])
    }

    /// Ends a chunked request body.
    public func finishBody() throws { try write(Array("0\r\n\r\n".utf8)) }

    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    private func fill() throws -> Bool {
        let chunk: [UInt8]
        do { chunk = try UnixSocket.receive(fd) } catch {
            throw ClientError.connection(error.code == EAGAIN ? "the daemon did not answer in time" : "reading from the daemon: \(error)")
        }
        buffer += chunk
        return !chunk.isEmpty
    }

    private func line() throws -> String? {
        while true {
            if let index = buffer.firstIndex(of: 10) {
                var line = Array(buffer[..<index])
                buffer.removeFirst(index + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { return nil }
        }
    }

    /// The status and headers.
    public func readHead() throws -> (Int, [(name: String, value: String)]) {
        guard let statusLine = try line() else { throw ClientError.connection("the daemon closed the connection without a reply") }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw ClientError.connection("not an HTTP reply: \(statusLine.prefix(80))")
        }
        var headers: [(name: String, value: String)] = []
        while let header = try line(), !header.isEmpty {
            guard let colon = header.firstIndex(of: ":") else { continue }
            let name = String(header[..<colon])
            let value = String(header[header.index(after: colon)...]).trimming(" \t")
            headers.append((name, value))
            switch name.lowercased() {
            case "content-length": remaining = Int(value)
            case "transfer-encoding": chunked = value.lowercased().contains("chunked")
            default: break
            }
        }
        if status == 204 || status == 304 { finished = true }
        return (status, headers)
    }

    /// The next piece of the body; nil at its end.
    public func readBody() throws -> [UInt8]? {
        guard !finished else { return nil }
        if chunked {
            if chunkLeft == 0 {
                guard let sizeLine = try line() else { finished = true; return nil }
                let hex = sizeLine.split(separator: ";").first.map(String.init)?.trimming(" ") ?? ""
                guard let size = Int(hex, radix: 16) else { throw ClientError.connection("bad chunk size '\(sizeLine.prefix(20))'") }
                if size == 0 {
                    while let trailer = try line(), !trailer.isEmpty {}
                    finished = true
                    return nil
                }
                chunkLeft = size
            }
            if buffer.isEmpty, !(try fill()) { finished = true; return nil }
            let take = min(chunkLeft, buffer.count)
            let data = Array(buffer[..<take])
            buffer.removeFirst(take)
            chunkLeft -= take
            if chunkLeft == 0 { _ = try line() }  // the CRLF after the chunk
            return data
        }
        if let left = remaining {
            if left == 0 { finished = true; return nil }
            if buffer.isEmpty, !(try fill()) { finished = true; return nil }
            let take = min(left, buffer.count)
            let data = Array(buffer[..<take])
            buffer.removeFirst(take)
            remaining = left - take
            return data
        }
        if buffer.isEmpty, !(try fill()) { finished = true; return nil }
        defer { buffer.removeAll() }
        return buffer
    }
}
