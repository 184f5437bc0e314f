import Foundation
import Testing

/// The VMM control socket (`vireo run --api-socket`): status, pause/resume, console, stop.
@Suite(.enabled { try TestEnvironment.available("ControlSocketTests", .kvm, .micro("counter")) })
struct ControlSocketTests {

    private func counts(_ logPath: String) -> [Int] {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { $0.hasPrefix("count=") ? Int($0.dropFirst(6)) : nil }
    }

    @Test func pauseResumeStatusConsoleStop() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-api-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let socket = dir.appendingPathComponent("api.sock").path
        let log = dir.appendingPathComponent("console.log").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--no-console",
                                                 "--console-log", log, "--api-socket", socket])
        defer { guest.stop() }
        let deadline = Date().addingTimeInterval(20)
        while counts(log).count < 3 && Date() < deadline { usleep(50_000) }
        #expect(counts(log).count >= 3, "counter did not start: \(guest.errorOutput)")

        let status = try UnixSocket.request(socket, "status", timeout: 10)
        #expect(status.contains("\"state\":\"running\"") && status.contains("\"io\":"), "status: \(status)")

        #expect(try UnixSocket.request(socket, "pause", timeout: 10).contains("\"paused\""))
        let frozen = counts(log).count
        usleep(600_000)
        #expect(counts(log).count == frozen, "the counter kept counting while paused")
        #expect(try UnixSocket.request(socket, "status", timeout: 10).contains("\"state\":\"paused\""))

        #expect(try UnixSocket.request(socket, "resume", timeout: 10).contains("\"running\""))
        let resumedDeadline = Date().addingTimeInterval(10)
        while counts(log).count <= frozen && Date() < resumedDeadline { usleep(50_000) }
        let afterResume = counts(log)
        #expect(afterResume.count > frozen, "the counter did not continue after resume")
        #expect(afterResume == Array(0..<afterResume.count), "counting must continue where it stopped")

        // The console line turns the connection into the guest's serial stream.
        let console = try UnixSocket.connect(socket)
        try UnixSocket.send(console, "console\n")
        #expect(try UnixSocket.readLine(console, timeout: 10).contains("\"console\":true"))
        // The guest writes byte by byte: the stream may start in the middle of a line.
        let streamed = try (0..<3).map { _ in try UnixSocket.readLine(console, timeout: 10) }
        #expect(streamed.contains { $0.hasPrefix("count=") }, "console stream: \(streamed)")
        close(console)

        #expect(try UnixSocket.request(socket, "bogus", timeout: 10).contains("\"ok\":false"))
        #expect(try UnixSocket.request(socket, "stop", timeout: 10).contains("\"ok\":true"))
        #expect(guest.waitForExit(timeout: 10) == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed when the VM ends")
    }

    @Test func consoleLogIsBounded() throws {
        let kernel = try #require(TestEnvironment.micro("echo"))
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-rotate-\(getpid()).log").path
        try? FileManager.default.removeItem(atPath: log)
        try? FileManager.default.removeItem(atPath: log + ".1")
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-console",
                                                 "--console-log", log, "--console-log-max", "4K"])
        defer { guest.stop() }
        // The echo guest writes back everything typed: 12 KiB of input → 12 KiB of console output.
        for _ in 0..<96 { guest.send(String(repeating: "x", count: 127) + "\n") }
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: log + ".1") && Date() < deadline { usleep(100_000) }
        kill(guest.process.processIdentifier, SIGTERM)
        _ = guest.waitForExit(timeout: 10)
        let size = (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? nil
        let rotatedSize = (try? FileManager.default.attributesOfItem(atPath: log + ".1")[.size] as? Int) ?? nil
        #expect(FileManager.default.fileExists(atPath: log + ".1"), "the log was never rotated")
        #expect((size ?? .max) <= 4096 + 256, "log size \(String(describing: size))")
        #expect((rotatedSize ?? .max) <= 4096 + 256, "rotated log size \(String(describing: rotatedSize))")
    }
}

/// Minimal blocking Unix-socket client for tests.
enum UnixSocket {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let result = withAddress(path) { Glibc.connect(fd, $0, $1) }
        guard result == 0 else { close(fd); throw Failure(description: "connect \(path): errno \(errno)") }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw Failure(description: "send failed: errno \(errno)")
        }
    }

    /// One control-socket exchange: a request line out, the reply line back.
    static func request(_ path: String, _ line: String, timeout: Double = 60) throws -> String {
        let fd = try connect(path)
        defer { close(fd) }
        try send(fd, line + "\n")
        return try readLine(fd, timeout: timeout)
    }

    /// Waits up to `timeout` seconds for a socket file to appear.
    static func waitForSocket(_ path: String, timeout: Double = 20) {
        let deadline = Date().addingTimeInterval(timeout)
        while !FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(20_000) }
    }

    /// A listening Unix socket bound at `path`.
    static func listen(_ path: String, backlog: Int32 = 8) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = withAddress(path) { bind(fd, $0, $1) } == 0
        guard bound, Glibc.listen(fd, backlog) == 0 else {
            close(fd)
            throw Failure(description: "listen \(path): errno \(errno)")
        }
        return fd
    }

    /// Calls `body` with `path` as a Unix socket address and its length.
    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() where index < raw.count - 1 { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Reads byte by byte up to a newline (fine for tests).
    static func readLine(_ fd: Int32, timeout: Double) throws -> String {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard poll(&poller, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard recv(fd, &byte, 1, 0) == 1 else { break }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        throw Failure(description: "no complete line within \(timeout) s (got '\(String(decoding: bytes, as: UTF8.self))')")
    }
}
