import Foundation
import Testing

/// Snapshot and restore through the control socket and `vireo run --restore`, with micro-guests.
@Suite(.enabled { try TestEnvironment.available("SnapshotTests", .kvm, .micro("counter")) })
struct SnapshotTests {
    private let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-snapshots-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    private func counts(_ text: String) -> [Int] {
        text.split(whereSeparator: \.isNewline).compactMap { $0.hasPrefix("count=") ? Int($0.dropFirst(6)) : nil }
    }

    /// Boots the counter, lets it count, pauses, snapshots, kills it; returns (dir, last count).
    /// `whileRunning` sees the VMM before the pause.
    private func snapshotCounter(name: String, extra: [String] = [],
                                 whileRunning: (GuestProcess) -> Void = { _ in }) throws -> (String, Int) {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let socket = scratch.appendingPathComponent("\(name).sock").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--api-socket", socket] + extra)
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=3", timeout: 20))
        whileRunning(guest)
        UnixSocket.waitForSocket(socket)
        #expect(try UnixSocket.request(socket, "pause", timeout: 30).contains("paused"))
        let directory = scratch.appendingPathComponent(name).path
        let reply = try UnixSocket.request(socket, "snapshot \(directory)", timeout: 30)
        #expect(reply.contains("\"ok\":true"), "snapshot: \(reply)")
        let last = counts(guest.output).last ?? -1
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)
        return (directory, last)
    }

    @Test func restoredCounterContinuesFromTheSnapshot() throws {
        let (directory, last) = try snapshotCounter(name: "counter")
        let restored = try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin", "-v"])
        defer { restored.stop() }
        #expect(restored.waitForOutput("count=\(last + 3)", timeout: 20), "restored output: \(restored.output) \(restored.errorOutput)")
        let values = counts(restored.output)
        #expect(values.first == last + 1, "restored counter starts at \(String(describing: values.first)), snapshot was at \(last)")
        #expect(values == Array((last + 1)..<(last + 1 + values.count)))
        kill(restored.process.processIdentifier, SIGTERM)
        _ = restored.waitForExit(timeout: 10)
        if let line = restored.errorOutput.split(separator: "\n").first(where: { $0.contains("first guest entry") }) {
            TestEnvironment.log("restore: \(line)")
        }
    }

    /// Whether KVM's worker thread for the in-kernel PIT of VMM `pid` (`kvm-pit/PID`) exists.
    private func hasPITWorker(_ pid: pid_t) -> Bool {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.contains { name in
            guard Int32(name) != nil, let comm = try? String(contentsOfFile: "/proc/\(name)/comm", encoding: .utf8) else { return false }
            return comm.trimmingCharacters(in: .whitespacesAndNewlines) == "kvm-pit/\(pid)"
        }
    }

    /// `--pit on` gives the VM KVM's in-kernel PIT, `off` none, `auto` what the verbose line says
    /// (none where the guest gets the TSC deadline timer); a restore has one exactly when its
    /// snapshot saved PIT state, and the guest goes on counting either way.
    @Test func thePITFollowsTheFlagAndTheSnapshot() throws {
        for mode in ["on", "off", "auto"] {
            var booted: (pit: Bool, said: String) = (false, "")
            let (directory, last) = try snapshotCounter(name: "pit-\(mode)", extra: ["--pit", mode, "-v"]) { guest in
                booted = (hasPITWorker(guest.process.processIdentifier), guest.errorOutput)
            }
            let saysPIT = booted.said.contains("; in-kernel PIT;")
            #expect(saysPIT || booted.said.contains("; no PIT;"), "--pit \(mode): \(booted.said)")
            #expect(booted.pit == saysPIT, "--pit \(mode): kvm-pit worker \(booted.pit), verbose: \(booted.said)")
            if mode != "auto" { #expect(booted.pit == (mode == "on"), "--pit \(mode)") }
            TestEnvironment.log("--pit \(mode): \(saysPIT ? "in-kernel PIT" : "no PIT")")

            let restored = try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin", "-v"])
            defer { restored.stop() }
            #expect(restored.waitForOutput("count=\(last + 2)", timeout: 20), "--pit \(mode) restored: \(restored.output) \(restored.errorOutput)")
            #expect(hasPITWorker(restored.process.processIdentifier) == booted.pit, "--pit \(mode) restored")
            #expect(restored.errorOutput.contains(booted.pit ? "; in-kernel PIT;" : "; no PIT;"), "\(restored.errorOutput)")
            kill(restored.process.processIdentifier, SIGTERM)
            _ = restored.waitForExit(timeout: 10)
        }
    }

    @Test func restoredEchoGuestStillTakesInput() throws {
        let kernel = try #require(TestEnvironment.micro("echo"))
        let socket = scratch.appendingPathComponent("echo.sock").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--api-socket", socket])
        defer { guest.stop() }
        #expect(guest.waitForOutput("echo ready", timeout: 20))
        guest.send("before\n")
        #expect(guest.waitForOutput("before", timeout: 10))
        UnixSocket.waitForSocket(socket)
        _ = try UnixSocket.request(socket, "pause", timeout: 30)
        let directory = scratch.appendingPathComponent("echo").path
        #expect(try UnixSocket.request(socket, "snapshot \(directory)", timeout: 30).contains("\"ok\":true"))
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)

        let restored = try GuestProcess(arguments: ["run", "--restore", directory])
        defer { restored.stop() }
        restored.send("after restore\n")
        #expect(restored.waitForOutput("after restore", timeout: 20), "output: \(restored.output) \(restored.errorOutput)")
        restored.send("\u{04}")
        #expect(restored.waitForExit(timeout: 20) == 0)
    }

    @Test func threeClonesRunAtOnce() throws {
        let (directory, last) = try snapshotCounter(name: "clones")
        let memoryFile = directory + "/memory.bin"
        let before = try Data(contentsOf: URL(fileURLWithPath: memoryFile))
        let clones = try (0..<3).map { index in
            try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin", "--console-log",
                                         scratch.appendingPathComponent("clone\(index).log").path])
        }
        defer { clones.forEach { $0.stop() } }
        for clone in clones {
            #expect(clone.waitForOutput("count=\(last + 5)", timeout: 30), "clone output: \(clone.output) \(clone.errorOutput)")
            #expect(counts(clone.output).first == last + 1)
        }
        clones.forEach { kill($0.process.processIdentifier, SIGTERM) }
        for clone in clones { #expect(clone.waitForExit(timeout: 10) == 128 + SIGTERM) }
        // Clones map the memory file privately: the snapshot is never modified.
        #expect(try Data(contentsOf: URL(fileURLWithPath: memoryFile)) == before)
    }

    @Test func badSnapshotsAreRefusedAndLeftUntouched() throws {
        let (directory, _) = try snapshotCounter(name: "bad")
        let state = try Data(contentsOf: URL(fileURLWithPath: directory + "/state.bin"))
        let memory = try Data(contentsOf: URL(fileURLWithPath: directory + "/memory.bin"))

        func variant(_ name: String, state makeState: (Data) -> Data?, memory makeMemory: (Data) -> Data?) throws -> String {
            let dir = scratch.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            if let data = makeState(state) { try data.write(to: dir.appendingPathComponent("state.bin")) }
            if let data = makeMemory(memory) { try data.write(to: dir.appendingPathComponent("memory.bin")) }
            return dir.path
        }
        func expectRefused(_ dir: String, _ mention: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
            let contents = try files.map { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)) }
            let guest = try GuestProcess(arguments: ["run", "--restore", dir, "--no-stdin"])
            defer { guest.stop() }
            let status = guest.waitForExit(timeout: 20)
            #expect(status == 2, "status \(String(describing: status)) for \(dir): \(guest.errorOutput)", sourceLocation: sourceLocation)
            #expect(guest.errorOutput.contains(mention), "stderr should mention '\(mention)': \(guest.errorOutput)", sourceLocation: sourceLocation)
            #expect(guest.output.isEmpty, "nothing may run: \(guest.output)", sourceLocation: sourceLocation)
            let after = try files.map { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)) }
            #expect(after == contents, "the snapshot was modified", sourceLocation: sourceLocation)
        }

        try expectRefused(try variant("truncated", state: { $0.prefix($0.count / 2) }, memory: { $0 }), "truncated")
        try expectRefused(try variant("corrupted", state: { var d = $0; d[d.count / 2] ^= 0x40; return d }, memory: { $0 }), "checksum")
        try expectRefused(try variant("version", state: { var d = $0; d[8] = 99; return d }, memory: { $0 }), "version 99")
        try expectRefused(try variant("nomemory", state: { $0 }, memory: { _ in nil }), "memory.bin is missing")
        try expectRefused(try variant("smallmemory", state: { $0 }, memory: { $0.prefix(4096) }), "declares")
        try expectRefused(try variant("notsnapshot", state: { _ in Data("hello".utf8) }, memory: { $0 }), "not a Vireo snapshot")
        try expectRefused(scratch.appendingPathComponent("does-not-exist").path, "does-not-exist")
    }

    /// `--snapshot-on SIGUSR2`: each signal writes a new snapshot and the VM runs on; directly and
    /// through the supervisor that cgroup limits bring (which must forward the signal).
    @Test(arguments: [[String](), ["--cpu-weight", "200"]])
    func snapshotOnSignal(extra: [String]) throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let directory = scratch.appendingPathComponent("on-signal-\(extra.count)").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin",
                                                 "--snapshot-on", "SIGUSR2", "--snapshot-dir", directory] + extra)
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=3", timeout: 20))
        func waitForError(_ text: String) -> Bool {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline && !guest.errorOutput.contains(text) { usleep(20_000) }
            return guest.errorOutput.contains(text)
        }
        kill(guest.process.processIdentifier, SIGUSR2)
        #expect(waitForError("snapshot written to \(directory)/snapshot-1"), "stderr: \(guest.errorOutput)")
        let atFirst = counts(guest.output).last ?? -1
        #expect(guest.waitForOutput("count=\(atFirst + 3)", timeout: 20), "the VM runs on after its snapshot")
        kill(guest.process.processIdentifier, SIGUSR2)
        #expect(waitForError("snapshot written to \(directory)/snapshot-2"), "a second signal, a second snapshot")
        kill(guest.process.processIdentifier, SIGTERM)
        #expect(guest.waitForExit(timeout: 20) == 128 + SIGTERM)

        let restored = try GuestProcess(arguments: ["run", "--restore", directory + "/snapshot-1", "--no-stdin"])
        defer { restored.stop() }
        #expect(restored.waitForOutput("count=\(atFirst + 2)", timeout: 20), "restored: \(restored.output) \(restored.errorOutput)")
        let values = counts(restored.output)
        #expect(values.first.map { $0 >= atFirst - 1 && $0 <= atFirst + 1 } == true,
                "the restore continues from about count=\(atFirst): \(values.prefix(3))")
    }

    @Test func snapshotOnSignalBadInput() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        for (arguments, message) in [(["--snapshot-on", "SIGKILL", "--snapshot-dir", "/tmp/x"], "SIGUSR2 or SIGQUIT"),
                                     (["--snapshot-on", "SIGUSR2"], "needs --snapshot-dir"),
                                     (["--snapshot-dir", "/tmp/x"], "needs --snapshot-on")] {
            let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--no-stdin"] + arguments)
            #expect(guest.waitForExit(timeout: 10) == 2)
            #expect(guest.errorOutput.contains(message), "\(arguments): \(guest.errorOutput)")
        }
    }
}
