import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// A ttrpc server on a listening Unix socket: one reader thread per connection, one thread per
/// request (containerd sends Start while its Wait is still pending on the same connection), and
/// responses written whole under the connection's lock.
final class TTRPCServer: @unchecked Sendable {
    typealias Handler = @Sendable (_ service: String, _ method: String, _ payload: [UInt8]) throws -> [UInt8]
    private let listener: Int32
    private let handler: Handler
    /// Requests in flight are bounded: a peer flooding the socket gets errors, not threads.
    private let inFlight = DispatchSemaphore(value: 64)

    init(listener: Int32, handler: @escaping Handler) {
        self.listener = listener
        self.handler = handler
    }

    /// Accepts connections until the process exits.
    func serve() -> Never {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                ShimLog.write("accept: \(String(cString: strerror(errno)))")
                usleep(100_000)
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // never inherited by the VM (vireo)
            Thread.detachNewThread { self.run(connection: fd) }
        }
    }

    private func run(connection fd: Int32) {
        let writeLock = NSLock()
        defer { close(fd) }
        while true {
            let frame: TTRPCFrame?
            do { frame = try TTRPCFrame.read(from: fd) } catch {
                ShimLog.write("ttrpc connection: \(error)")
                return
            }
            guard let frame else { return }
            guard frame.type == TTRPCFrame.request else { continue }  // data frames belong to streams: unused
            inFlight.wait()
            Thread.detachNewThread {
                defer { self.inFlight.signal() }
                let response = self.respond(to: frame.payload)
                let out = TTRPCFrame(streamID: frame.streamID, type: TTRPCFrame.response, payload: response)
                writeLock.lock()
                defer { writeLock.unlock() }
                do { try out.write(to: fd) } catch { ShimLog.write("ttrpc response: \(error)") }
            }
        }
    }

    private func respond(to payload: [UInt8]) -> [UInt8] {
        var response = Ttrpc_Response()
        do {
            let request = try Ttrpc_Request(serializedBytes: payload)
            response.payload = Data(try handler(request.service, request.method, [UInt8](request.payload)))
        } catch let error as ShimError {
            response.status = .with { $0.code = error.code; $0.message = error.message }
        } catch {
            response.status = .with { $0.code = ShimError.internal; $0.message = "\(error)" }
        }
        return (try? [UInt8](response.serializedBytes() as [UInt8])) ?? []
    }
}

/// One call to a ttrpc server (containerd's events service): connect, send, read the response, close.
enum TTRPCClient {
    static func call(socket path: String, service: String, method: String, payload: [UInt8],
                     metadata: [String: String] = [:], timeoutSeconds: Int = 5) throws -> [UInt8] {
        let fd = try UnixSocket.connect(path)
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = Data(payload)
        request.timeoutNano = Int64(timeoutSeconds) * 1_000_000_000
        request.metadata = metadata.map { key, value in .with { $0.key = key; $0.value = value } }
        try TTRPCFrame(streamID: 1, type: TTRPCFrame.request, payload: try request.serializedBytes()).write(to: fd)
        guard let frame = try TTRPCFrame.read(from: fd) else { throw TTRPCError("\(path) closed the connection") }
        let response = try Ttrpc_Response(serializedBytes: frame.payload)
        if response.hasStatus && response.status.code != 0 {
            throw TTRPCError("\(service)/\(method): \(response.status.message) (code \(response.status.code))")
        }
        return [UInt8](response.payload)
    }
}
