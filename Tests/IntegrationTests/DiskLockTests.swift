import Foundation
import Testing

/// Issue 12, finding 6: a disk image has one writer at a time (OFD locks): a second VMM that
/// wants to write it, or read it while it is written, is refused at once with exit 2.
@Suite(.enabled { try TestEnvironment.available("DiskLockTests", .kvm, .micro("counter")) })
struct DiskLockTests {
    private let scratch = "/tmp/vireo-disklock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    /// Starts the counter with `disk` and waits until it runs (so its locks are held).
    private func running(disk: String) throws -> GuestProcess {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "32M", "--no-stdin", "--disk", disk])
        #expect(guest.waitForOutput("count=1", timeout: 20), "first VM: \(guest.errorOutput)")
        return guest
    }

    private func expectRefused(disk: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let second = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "32M", "--no-stdin", "--disk", disk])
        defer { second.stop() }
        let status = second.waitForExit(timeout: 15)
        #expect(status == 2, "second VM with \(disk): \(String(describing: status)) \(second.errorOutput)", sourceLocation: sourceLocation)
        #expect(second.errorOutput.contains("another VM"), "\(second.errorOutput)", sourceLocation: sourceLocation)
        #expect(second.output.isEmpty, "the second guest must not run", sourceLocation: sourceLocation)
    }

    private func makeImage(_ name: String) throws -> String {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let path = scratch + "/" + name
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func aSecondWriterOrReaderIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let image = try makeImage("shared.img")
        let first = try running(disk: image)
        defer { first.stop() }
        try expectRefused(disk: image)
        try expectRefused(disk: image + ",readonly")
        // An overlay reads its base: not while another VM writes that base.
        try expectRefused(disk: "\(scratch)/clone.ovl,backing=\(image)")
        #expect(first.process.isRunning, "the first VM is untouched")
    }

    @Test func readersShareAndWritersOfOverlaysAreAlone() throws {
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let base = try makeImage("base.img")
        let reader = try running(disk: base + ",readonly")
        defer { reader.stop() }
        let overlay = try running(disk: "\(scratch)/a.ovl,backing=\(base)")
        defer { overlay.stop() }
        #expect(reader.process.isRunning && overlay.process.isRunning, "shared readers of one base")
        try expectRefused(disk: base)                                       // a writer beside readers
        try expectRefused(disk: "\(scratch)/a.ovl,backing=\(base)")         // a second writer of the overlay
    }
}
