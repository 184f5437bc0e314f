import Foundation
import Testing

/// The micro-guests bench/compare runs (hello, pio, mmio, touch, idle) under the real `vireo run
/// --debug-exit`: each ends through the isa-debug-exit port with status (0 << 1) | 1 = 1, except
/// idle, which halts until it is stopped.
@Suite(.enabled { try TestEnvironment.available("CompareGuestTests", .kvm, .micro("hello")) })
struct CompareGuestTests {
    init() { TestEnvironment.log("host: \(TestEnvironment.host)") }

    /// Runs `name` with --debug-exit and -v; returns the finished process.
    private func run(_ name: String, cmdline: String? = nil, memory: String = "64M",
                     debugExit: Bool = true) throws -> (GuestProcess, Int32?) {
        let kernel = try #require(TestEnvironment.micro(name))
        var arguments = ["run", "--kernel", kernel, "--memory", memory, "--no-stdin", "-v"]
        if debugExit { arguments.append("--debug-exit") }
        if let cmdline { arguments += ["--cmdline", cmdline] }
        let guest = try GuestProcess(arguments: arguments)
        return (guest, guest.waitForExit(timeout: 60))
    }

    /// The number after `label` in the `-v` exit-count line (`exits: io N, mmio N, ...`).
    private func exitCount(_ label: String, in stderr: String) -> Int? {
        guard let line = stderr.split(separator: "\n").first(where: { $0.contains("exits: io") }),
              let range = line.range(of: "\(label) ") else { return nil }
        return Int(line[range.upperBound...].prefix(while: \.isNumber))
    }

    @Test func helloWritesAByteAndExitsThroughDebugExit() throws {
        let (guest, status) = try run("hello")
        defer { guest.stop() }
        #expect(status == 1, "stderr: \(guest.errorOutput)")
        #expect(guest.output == "!", "output: \(guest.output)")
        #expect(guest.errorOutput.contains("debug-exit"))
    }

    @Test func helloPowersOffWithoutTheDebugExitPort() throws {
        let (guest, status) = try run("hello", debugExit: false)
        defer { guest.stop() }
        #expect(status == 0, "stderr: \(guest.errorOutput)")
        #expect(guest.output == "!")
    }

    @Test func pioGuestMakesNPortExits() throws {
        let (guest, status) = try run("pio", cmdline: "n=2000")
        defer { guest.stop() }
        #expect(status == 1, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("VIREO-MICRO pio n=2000"), "output: \(guest.output)")
        let io = try #require(exitCount("io", in: guest.errorOutput), "stderr: \(guest.errorOutput)")
        #expect(io >= 2000)
    }

    @Test func mmioGuestMakesNMMIOExits() throws {
        let (guest, status) = try run("mmio", cmdline: "n=2000")
        defer { guest.stop() }
        #expect(status == 1, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("VIREO-MICRO mmio n=2000"), "output: \(guest.output)")
        #expect(exitCount("mmio", in: guest.errorOutput) == 2000, "stderr: \(guest.errorOutput)")
    }

    @Test func touchGuestMakesItsMemoryResident() throws {
        let (guest, status) = try run("touch", cmdline: "mib=16", memory: "64M")
        defer { guest.stop() }
        #expect(status == 1, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("VIREO-MICRO touch mib=16"), "output: \(guest.output)")
        let match = guest.errorOutput.firstMatch(of: #/guest RAM resident (\d+) KiB/#)
        let resident = try #require(match.flatMap { Int($0.1) }, "stderr: \(guest.errorOutput)")
        #expect(resident >= 16 * 1024)
    }

    @Test func idleGuestStaysUpWithoutSpinningUntilSIGTERM() throws {
        let kernel = try #require(TestEnvironment.micro("idle"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin",
                                                 "--debug-exit"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("VIREO-MICRO idle", timeout: 30), "output: \(guest.output) \(guest.errorOutput)")
        let pid = guest.process.processIdentifier
        let before = cpuSeconds(pid)
        usleep(2_000_000)
        #expect(guest.process.isRunning, "stderr: \(guest.errorOutput)")
        // A vCPU halted in the in-kernel irqchip sleeps; a spinning one would burn ~2 s here.
        let used = cpuSeconds(pid) - before
        TestEnvironment.log("idle guest used \(used) s of CPU in 2 s")
        #expect(used < 0.5)
        kill(pid, SIGTERM)
        #expect(guest.waitForExit(timeout: 10) == 128 + SIGTERM, "stderr: \(guest.errorOutput)")
    }

    /// User + system CPU seconds of `pid` from /proc/<pid>/stat.
    private func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
