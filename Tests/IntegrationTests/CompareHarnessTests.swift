import Foundation
import Testing

/// `bench/compare --smoke` end to end: Vireo and QEMU on the micro-guests, table written to a
/// temporary directory (never over the committed bench/results). Needs qemu-system-x86_64; without
/// it the test logs why and passes, unless VIREO_REQUIRE_GUESTS=1 (scripts/deps installs QEMU then).
@Suite(.enabled { try TestEnvironment.available("CompareHarnessTests", .kvm, .micro("hello")) })
struct CompareHarnessTests {
    /// Row labels bench/compare always prints (the Linux row says "not run" in smoke mode).
    static let rows = [
        "start → guest exit, hello guest",
        "start → first console byte, hello guest",
        "Vireo: start → first guest entry",
        "start → guest exit, hello guest, hyperfine",
        "PIO exits per second",
        "MMIO exits per second",
        "peak RSS − guest memory touched",
        "Vireo: VMM overhead from --verbose",
        "density: idle 64 MiB VMs started",
        "density: time to start them",
        "density: total RSS of all VMs",
        "density: total PSS of all VMs",
        "density: RSS minus guest RAM, per VM",
        "density: private anonymous memory minus guest RAM, per VM",
        "density: host CPU of all idle VMs",
        "Vireo: Linux test kernel",
        "Vireo: snapshot restore",
        "Vireo: the same through `vireo serve --warm-pool 1`",
    ]

    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func smokeRunPrintsEveryRow() throws {
        for tool in ["qemu-system-x86_64", "python3"] where Self.onPath(tool) == nil {
            if TestEnvironment.requireGuests {
                Issue.record("\(tool) is not installed, but VIREO_REQUIRE_GUESTS=1 (scripts/deps installs it)")
            } else {
                TestEnvironment.log("CompareHarnessTests skipped: \(tool) not on PATH (apt-get install qemu-system-x86)")
            }
            return
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-compare-\(getpid())")
        try? FileManager.default.removeItem(at: out)
        defer { try? FileManager.default.removeItem(at: out) }

        var arguments = [Self.repositoryRoot.appendingPathComponent("bench/compare").path, "--smoke",
                         "--out", out.path, "--vireo", TestEnvironment.vireoBinary]
        if let micro = TestEnvironment.path("VIREO_MICRO_DIR") { arguments += ["--micro-dir", micro] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        // Read both pipes to the end on other threads so neither can fill up and block the harness.
        let outputs = [stdout, stderr].map { pipe in
            let box = DataBox()
            let thread = Thread { box.set(pipe.fileHandleForReading.readDataToEndOfFile()) }
            thread.start()
            return box
        }
        let deadline = Date().addingTimeInterval(180)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        let printed = outputs[0].wait(), log = outputs[1].wait()
        TestEnvironment.log("bench/compare --smoke took \(Int(seconds)) s:\n\(printed)")
        TestEnvironment.log("bench/compare stderr:\n\(log)")
        #expect(process.terminationStatus == 0)

        let table = try String(contentsOf: out.appendingPathComponent("compare.md"), encoding: .utf8)
        let lines = table.split(separator: "\n").filter { $0.hasPrefix("| ") }
        for row in Self.rows {
            #expect(lines.contains { $0.hasPrefix("| \(row)") }, "no row '\(row)' in:\n\(table)")
        }
        #expect(!table.contains("failed"), "a VMM run failed:\n\(table)\n\(log)")
        // Both columns have numbers on the measured rows, and the QEMU accelerator is named.
        let hello = try #require(lines.first { $0.hasPrefix("| start → guest exit, hello guest (") })
        let cells = hello.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(cells.count >= 3 && Double(cells[1]) != nil && Double(cells[2]) != nil, "row: \(hello)")
        #expect(table.contains("-accel kvm") || table.contains("-accel tcg"))
        // The pooled restore ran through a real daemon (bench/restore-pool) and reached the guest.
        let pooled = try #require(lines.first { $0.hasPrefix("| Vireo: the same through `vireo serve --warm-pool 1`") })
        let pooledCells = pooled.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(pooledCells.count >= 2 && Double(pooledCells[1]) != nil, "row: \(pooled)")
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("compare.json").path))
    }
}

/// One value handed from a reader thread to the test, waited for with a semaphore.
private final class DataBox: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private var data = Data()

    func set(_ value: Data) {
        data = value
        ready.signal()
    }

    func wait() -> String {
        ready.wait()
        return String(decoding: data, as: UTF8.self)
    }
}
