import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One attachment to a VM's serial console through its VMM's control socket: the `console`
/// request turns the connection into a raw byte stream (bytes in go to the guest's UART, console
/// output comes out).
final class ConsoleRelay: Sendable {
    let fd: Int32
    /// Console output, read by a thread of its own until the VMM closes the connection or `close()`.
    let output: AsyncStream<[UInt8]>

    private init(fd: Int32, pending: [UInt8]) {
        self.fd = fd
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(16384))
        output = stream
        if !pending.isEmpty { continuation.yield(pending) }
        let thread = Thread {
            while let chunk = try? UnixSocket.receive(fd, max: 16384), !chunk.isEmpty {
                continuation.yield(chunk)
            }
            continuation.finish()
        }
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Connects to the VMM at `socketPath` and switches the connection to console mode.
    static func attach(socketPath: String) async throws -> ConsoleRelay {
        let (fd, pending) = try await runOnThread { () throws -> (Int32, [UInt8]) in
            let fd = try UnixSocket.connect(socketPath, timeout: 5)
            do {
                try UnixSocket.sendAll(fd, Array("console\n".utf8))
                var rest: [UInt8] = []
                let line = try UnixSocket.readLine(fd, rest: &rest)
                guard (try? JSONParser.parse(line))?["ok"]?.boolValue == true else {
                    throw APIError.vmmUnavailable("the VMM refused the console: \(line)")
                }
                UnixSocket.setTimeout(fd, seconds: 0)  // console traffic may pause for any time
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
        try UnixSocket.sendAll(fd, bytes)
    }

    /// Ends the attachment: the reader thread sees end of stream, then the descriptor is closed.
    func close() async {
        shutdown(fd, Int32(SHUT_RDWR))
        for await _ in output {}
        Glibc.close(fd)
    }
}
