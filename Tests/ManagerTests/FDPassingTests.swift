import CVireoSystem
import Foundation
@testable import Manager
import Testing

/// The warm pool's descriptor passing (CVireoSystem/fd_passing.c): a message and its descriptors
/// arrive together and usable; what does not fit is refused whole, its descriptors closed.
@Suite struct FDPassingTests {
    /// A SOCK_SEQPACKET pair, as the daemon and a pool member use.
    private static func pair() throws -> (Int32, Int32) {
        var ends: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0)
        return (ends[0], ends[1])
    }

    /// Receives with room for `capacity` bytes and `maxFDs` descriptors.
    private static func receive(_ socket: Int32, capacity: Int = 64, maxFDs: Int32 = 6) -> (Int, String, [Int32]) {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var fds = [Int32](repeating: -1, count: Int(CSYS_FD_PASSING_MAX))
        var count: Int32 = 0
        let received = buffer.withUnsafeMutableBytes { data in
            fds.withUnsafeMutableBufferPointer { csys_receive_fds(socket, data.baseAddress, data.count, $0.baseAddress, maxFDs, &count) }
        }
        let text = received > 0 ? String(decoding: buffer[0..<received], as: UTF8.self) : ""
        return (received, text, Array(fds[0..<Int(count)]))
    }

    /// Pipes whose read ends are sent; each write end then tells which descriptor arrived where.
    private static func pipes(_ count: Int) throws -> [(read: Int32, write: Int32)] {
        try (0..<count).map { _ in
            var ends: [Int32] = [-1, -1]
            try #require(pipe(&ends) == 0)
            return (ends[0], ends[1])
        }
    }

    @Test func descriptorsArriveInOrderWithTheMessageAndCloseOnExec() throws {
        let (daemon, member) = try Self.pair()
        defer { close(daemon); close(member) }
        let sent = try Self.pipes(3)
        defer { for p in sent { close(p.read); close(p.write) } }
        let message = Array("vm 1\n".utf8)
        let result = sent.map(\.read).withUnsafeBufferPointer { list in
            message.withUnsafeBytes { WarmPoolHandoffTestSupport.send(daemon, $0, list) }
        }
        #expect(result == message.count)
        let (received, text, fds) = Self.receive(member)
        defer { for fd in fds { close(fd) } }
        #expect(received == 5 && text == "vm 1\n" && fds.count == 3)
        for (index, fd) in fds.enumerated() {
            #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0, "descriptor \(index) is not close-on-exec")
            var byte = UInt8(index + 65)
            #expect(write(sent[index].write, &byte, 1) == 1)
            var got: UInt8 = 0
            #expect(read(fd, &got, 1) == 1 && got == byte, "descriptor \(index) is not the \(index)th pipe")
        }
    }

    @Test func tooManyDescriptorsOrBytesAreRefusedWholeAndClosed() throws {
        let (daemon, member) = try Self.pair()
        defer { close(member) }
        let sent = try Self.pipes(8)
        defer { for p in sent { close(p.write) } }
        // Eight descriptors to a receiver that takes six: nothing is handed over, all are closed
        // (the pipes' write ends then see no reader left).
        let message = Array("vm 1\n".utf8)
        _ = sent.map(\.read).withUnsafeBufferPointer { list in message.withUnsafeBytes { WarmPoolHandoffTestSupport.send(daemon, $0, list) } }
        for p in sent { close(p.read) }
        let (received, _, fds) = Self.receive(member, maxFDs: 6)
        #expect(received == -Int(EMSGSIZE) && fds.isEmpty)
        signal(SIGPIPE, SIG_IGN)
        var byte: UInt8 = 1
        for p in sent { #expect(write(p.write, &byte, 1) == -1 && errno == EPIPE, "a refused descriptor stayed open") }
        // A message longer than the buffer: refused too.
        let long = [UInt8](repeating: 0x61, count: 100)
        _ = long.withUnsafeBytes { WarmPoolHandoffTestSupport.send(daemon, $0, []) }
        #expect(Self.receive(member, capacity: 16).0 == -Int(EMSGSIZE))
        // Bounds on the sending side: more than CSYS_FD_PASSING_MAX descriptors, or no bytes.
        let many = [Int32](repeating: 0, count: Int(CSYS_FD_PASSING_MAX) + 1)
        #expect(many.withUnsafeBufferPointer { list in message.withUnsafeBytes { WarmPoolHandoffTestSupport.send(daemon, $0, list) } } == -Int(EINVAL))
        #expect([UInt8]().withUnsafeBytes { WarmPoolHandoffTestSupport.send(daemon, $0, []) } == -Int(EINVAL))
        // End of file: 0 bytes, no descriptor.
        close(daemon)
        let (atEnd, _, none) = Self.receive(member)
        #expect(atEnd == 0 && none.isEmpty)
    }
}

/// csys_send_fds over Swift buffers.
enum WarmPoolHandoffTestSupport {
    static func send(_ socket: Int32, _ bytes: UnsafeRawBufferPointer, _ fds: UnsafeBufferPointer<Int32>) -> Int {
        csys_send_fds(socket, bytes.baseAddress, bytes.count, fds.baseAddress, Int32(fds.count))
    }

    static func send(_ socket: Int32, _ bytes: UnsafeRawBufferPointer, _ fds: [Int32]) -> Int {
        fds.withUnsafeBufferPointer { send(socket, bytes, $0) }
    }
}
