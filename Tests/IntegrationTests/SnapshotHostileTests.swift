import Foundation
import Testing
@testable import VMM

/// Issue 12, findings 7 and 9: a snapshot target with a planted link leaves the victim intact; a
/// snapshot whose CMOS time offset would overflow is refused with a clear error (exit 2), not a trap.
@Suite(.enabled { try TestEnvironment.available("SnapshotHostileTests", .kvm, .micro("counter")) })
struct SnapshotHostileTests {
    private let scratch = "/tmp/vireo-snaphostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    /// Runs the counter paused behind a control socket, calls `body`, then kills it.
    private func withPausedCounter(_ body: (_ socket: String) throws -> Void) throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let socket = scratch + "/api.sock"
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--api-socket", socket])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=2", timeout: 20))
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(20_000) }
        #expect(try UnixSocket.request(socket, "pause", timeout: 30).contains("paused"))
        try body(socket)
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)
    }

    @Test func plantedLinksInTheTargetAreNeverFollowed() throws {
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try withPausedCounter { (socket: String) throws in
            let victim = scratch + "/victim"
            let original = Data("precious root-owned bytes\n".utf8)
            try original.write(to: URL(fileURLWithPath: victim))
            let victimDir = scratch + "/victim-dir"
            try FileManager.default.createDirectory(atPath: victimDir, withIntermediateDirectories: true)

            // The target itself a link to another directory.
            let linked = scratch + "/linked"
            symlink(victimDir, linked)
            let linkReply = try UnixSocket.request(socket, "snapshot \(linked)", timeout: 30)
            #expect(!linkReply.contains("\"ok\":true") && linkReply.contains("symbolic link"), "\(linkReply)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: victimDir).isEmpty)

            // An existing target with the VMM's temporary file planted as a link to the victim.
            let planted = scratch + "/planted"
            try FileManager.default.createDirectory(atPath: planted, withIntermediateDirectories: true)
            symlink(victim, planted + "/memory.bin.tmp")
            let plantedReply = try UnixSocket.request(socket, "snapshot \(planted)", timeout: 30)
            #expect(!plantedReply.contains("\"ok\":true") && plantedReply.contains("not empty"), "\(plantedReply)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == original, "the victim was written through the link")

            // A fresh target still works.
            let fresh = scratch + "/fresh"
            #expect(try UnixSocket.request(socket, "snapshot \(fresh)", timeout: 30).contains("\"ok\":true"))
            #expect(FileManager.default.fileExists(atPath: fresh + "/state.bin"))
        }
    }

    @Test func outOfRangeCMOSOffsetIsRefusedClearly() throws {
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let good = scratch + "/good"
        try withPausedCounter { (socket: String) throws in
            #expect(try UnixSocket.request(socket, "snapshot \(good)", timeout: 30).contains("\"ok\":true"))
        }
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: good + "/state.bin")))
        var state = try SnapshotState.decode(bytes)
        // The CMOS record ends with the guest's time offset (i64): make it overflow calendar maths.
        state.rtc.replaceSubrange((state.rtc.count - 8)..., with: withUnsafeBytes(of: Int64.max.littleEndian, Array.init))
        let bad = scratch + "/bad"
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        try Data(state.encoded()).write(to: URL(fileURLWithPath: bad + "/state.bin"))
        try FileManager.default.copyItem(atPath: good + "/memory.bin", toPath: bad + "/memory.bin")
        let guest = try GuestProcess(arguments: ["run", "--restore", bad, "--no-stdin"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 20)
        #expect(status == 2, "status \(String(describing: status)): \(guest.errorOutput)")
        #expect(guest.errorOutput.contains("CMOS") && guest.errorOutput.contains("out of range"), "\(guest.errorOutput)")
        #expect(guest.output.isEmpty, "the guest must not run: \(guest.output)")
    }
}
