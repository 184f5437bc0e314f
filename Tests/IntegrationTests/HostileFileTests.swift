import Foundation
import Manager
import Testing

/// Issue 12, finding 8 (and 3's leaked bytes): FIFOs, devices and directories given as kernel, initrd,
/// disk or snapshot state are refused at once, in `vireo run` (exit 2, one line) and in the daemon
/// (4xx, and it keeps answering); a refused kernel's bytes never appear in the message.
@Suite(.enabled { try TestEnvironment.available("HostileFileTests", .kvm, .micro("counter")) })
struct HostileFileTests {
    /// A fresh directory holding a FIFO named `name`.
    static func fifo(_ name: String, in directory: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/" + name
        unlink(path)
        guard mkfifo(path, 0o600) == 0 else { throw DaemonTestFailure("mkfifo \(path): \(errno)") }
        return path
    }

    private func expectRefusedAtOnce(_ arguments: [String], mentions: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let guest = try GuestProcess(arguments: arguments)
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 10)
        let lines = guest.errorOutput.split(separator: "\n").filter { !$0.isEmpty }
        #expect(status == 2, "\(arguments): status \(String(describing: status)) (nil = hung), stderr: \(guest.errorOutput)",
                sourceLocation: sourceLocation)
        #expect(lines.count == 1, "one line expected: \(guest.errorOutput)", sourceLocation: sourceLocation)
        #expect(guest.errorOutput.contains(mentions), "should mention '\(mentions)': \(guest.errorOutput)", sourceLocation: sourceLocation)
    }

    @Test func runRefusesNonRegularFilesWithoutBlocking() throws {
        let counter = try #require(TestEnvironment.micro("counter"))
        let directory = "/tmp/vireo-hostile-run-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pipe = try HostileFileTests.fifo("pipe", in: directory)
        try expectRefusedAtOnce(["run", "--kernel", pipe, "--no-stdin"], mentions: "FIFO")
        try expectRefusedAtOnce(["run", "--kernel", counter, "--initrd", pipe, "--no-stdin"], mentions: "FIFO")
        // Disks are checked when the command line is read, and again (fstat) when opened.
        try expectRefusedAtOnce(["run", "--kernel", counter, "--disk", pipe, "--no-stdin"], mentions: "not a regular file")
        try expectRefusedAtOnce(["run", "--kernel", counter, "--disk", "\(pipe),readonly", "--no-stdin"], mentions: "not a regular file")
        try expectRefusedAtOnce(["run", "--kernel", counter, "--disk", "/dev/zero", "--no-stdin"], mentions: "not a regular file")
        try expectRefusedAtOnce(["run", "--kernel", counter, "--disk", directory, "--no-stdin"], mentions: "not a regular file")
        let snapshot = directory + "/snap"
        _ = try HostileFileTests.fifo("state.bin", in: snapshot)
        try expectRefusedAtOnce(["run", "--restore", snapshot, "--no-stdin"], mentions: "FIFO")
        // A planted link as the snapshot state is refused too.
        unlink(snapshot + "/state.bin")
        symlink("/etc/passwd", snapshot + "/state.bin")
        try expectRefusedAtOnce(["run", "--restore", snapshot, "--no-stdin"], mentions: "symbolic link")
    }

    @Test func refusedKernelBytesAreNeverEchoed() throws {
        let directory = "/tmp/vireo-hostile-bytes-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let secret = directory + "/secret"
        // A zip header then a "secret": neither its hex nor its text may reach the message.
        try Data([0x50, 0x4B, 0x03, 0x04] + Array("hunter2-hunter2".utf8)).write(to: URL(fileURLWithPath: secret))
        let guest = try GuestProcess(arguments: ["run", "--kernel", secret, "--no-stdin"])
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 10) == 2)
        let text = guest.errorOutput.lowercased()
        #expect(text.contains("not an elf or bzimage"), "\(guest.errorOutput)")
        #expect(!text.contains("50 4b") && !text.contains("hunter2") && !text.contains("0x4034b50"), "bytes echoed: \(guest.errorOutput)")
    }

    @Test func daemonRefusesFIFOsAndKeepsAnswering() throws {
        let counter = try #require(TestEnvironment.micro("counter"))
        let daemon = try DaemonProcess()
        defer { daemon.stop() }
        let directory = daemon.directory + "/hostile"
        let pipe = try HostileFileTests.fifo("pipe", in: directory)
        let snapshot = directory + "/snap"
        _ = try HostileFileTests.fifo("state.bin", in: snapshot)
        try Data(count: 4096).write(to: URL(fileURLWithPath: snapshot + "/memory.bin"))

        func create(_ fields: [(key: String, value: JSONValue)]) throws -> HTTPReply {
            try daemon.client.send("POST", "/vms", json: .object([("name", .string("h"))] + fields), timeout: 10)
        }
        for (fields, field) in [([("kernel", JSONValue.string(pipe))], "kernel"),
                                ([("kernel", .string(counter)), ("initrd", .string(pipe))], "initrd"),
                                ([("restore", .string(snapshot))], "restore")] as [([(key: String, value: JSONValue)], String)] {
            let reply = try create(fields)
            #expect((400..<500).contains(reply.status), "\(field): \(reply.status) \(reply.text)")
            #expect(reply.json?["error"]?["field"]?.stringValue?.hasPrefix(String(field.prefix(4))) == true, "\(reply.text)")
            let info = try daemon.client.send("GET", "/info", timeout: 5)
            #expect(info.status == 200)
        }

        // A kernel swapped for a FIFO after create: the VMM refuses it at once, the daemon answers.
        let kernel = directory + "/kernel"
        try FileManager.default.copyItem(atPath: counter, toPath: kernel)
        try daemon.create("swap", kernel: kernel)
        unlink(kernel)
        mkfifo(kernel, 0o600)
        let started = Date()
        _ = try daemon.client.send("POST", "/vms/swap/start", timeout: 20)
        let vm = daemon.waitForVM("swap", timeout: 15) { ["error", "crashed", "stopped"].contains($0.state ?? "") }
        #expect(["error", "crashed", "stopped"].contains(vm?.state ?? ""), "\(String(describing: vm))")
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(try daemon.client.send("GET", "/vms", timeout: 5).status == 200)
    }
}
