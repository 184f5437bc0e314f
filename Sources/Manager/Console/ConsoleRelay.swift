import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One attachment to a VM's serial console through its VMM's control socket: the `console`
/// request turns the connection into a raw byte stream (bytes in go to the guest's UART, console
/// output comes out).
final class ConsoleRelay: Sendable {
    private let fd: Int32
    /// Set once the descriptor is closed: later calls must not touch a number the kernel may reuse.
    private let closed = ClosedFlag()
    /// Console output, read by a thread of its own until the VMM closes the connection or `close()`.
    let output: AsyncStream<[UInt8]>

    private init(fd: Int32, pending: [UInt8]) {
        self.fd = fd
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(16384))
        output = stream
        if !pending.isEmpty { continuation.yield(pending) }
        let closed = self.closed
        // The reader owns the descriptor's end: it closes it after its last read, so no one ever
        // reads or writes a number the kernel has handed out again.
        let thread = Thread {
            while let chunk = try? UnixSocket.receive(fd, max: 16384), !chunk.isEmpty {
                continuation.yield(chunk)
            }
            continuation.finish()
            closed.value.withLock { closed in
                closed = true
                Glibc.close(fd)
            }
        }
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Connects to the VMM at `socketPath` and switches the connection to console mode.
    /// `expectedPID` as for VMMControl: the peer must be this VM's VMM.
    static func attach(socketPath: String, expectedPID: Int32?) async throws -> ConsoleRelay {
        let (fd, pending) = try await runOnThread { () throws -> (Int32, [UInt8]) in
            let fd = try VMMControl.connect(socketPath, expecting: expectedPID, timeout: 5)
            do {
                try UnixSocket.sendAll(fd, Array("console\n".utf8))
                var rest: [UInt8] = []
                let line = try UnixSocket.readLine(fd, rest: &rest)
                guard (try? JSONParser.parse(line))?["ok"]?.boolValue == true else {
                    throw APIError.vmmUnavailable("the VMM refused the console: \(line)")
                }
                // Console output may pause for any time; a write that blocks 5 s means a stuck VMM.
                var none = timeval(tv_sec: 0, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
                return (fd, rest)
            } catch {
                Glibc.close(fd)
                throw error
            }
        }
        return ConsoleRelay(fd: fd, pending: pending)
    }

    /// Types `bytes` into the guest's UART.
    func send(_ bytes: some Collection<UInt8>) throws {
        try closed.value.withLock { closed in
            guard !closed else { throw SocketError(what: "console detached:", path: "socket", code: EBADF) }
            try UnixSocket.sendAll(fd, bytes)
        }
    }

    /// Ends the exchange without closing the descriptor: the reader thread sees end of stream.
    /// Safe to call at any time, from any task, any number of times.
    func hangUp() {
        closed.value.withLock { closed in
            if !closed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Hangs up; the reader thread then closes the descriptor.
    func close() { hangUp() }
}

/// Whether a relay's descriptor is closed, shared by the relay and its reader thread.
private final class ClosedFlag: Sendable {
    let value = Mutex(false)
}
