import Foundation
import Testing

/// The debug guest profiler (`VIREO_GUEST_PROFILE=PATH[,MS]`, Sources/VMM/GuestProfiler.swift): a
/// micro-guest that counts in user mode for ~0.5 s is sampled every millisecond.
@Suite(.enabled { try TestEnvironment.available("GuestProfilerTests", .kvm, .micro("counter")) })
struct GuestProfilerTests {
    @Test func samplesTheGuestInstructionPointer() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-profile-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let profile = dir.appendingPathComponent("profile.txt").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--cmdline", "count=5", "--memory", "64M",
                                                 "--no-stdin"],
                                     environment: ["VIREO_GUEST_PROFILE": profile + ",1"])
        let status = guest.waitForExit(timeout: 60)
        #expect(status == 0, "counter: \(status ?? -1) \(guest.errorOutput)")
        #expect(guest.output.contains("count=5"), "output: \(guest.output)")

        let lines = try String(contentsOfFile: profile, encoding: .utf8).split(separator: "\n")
        let header = try #require(lines.first)
        #expect(header.hasPrefix("# vireo guest profile v1: interval_us 1000 kicks "), "header: \(header)")
        let samples = lines.dropFirst().map { $0.split(separator: " ") }
        // ~500 ms of counting at 1 ms: far more than 20 even on a loaded host.
        #expect(samples.count >= 20, "samples: \(samples.count) (\(header))")
        var times: [UInt64] = []
        for fields in samples {
            #expect(fields.count == 3, "line: \(fields)")
            guard fields.count == 3, let time = UInt64(fields[0]), let rip = UInt64(fields[2], radix: 16) else { continue }
            times.append(time)
            #expect(fields[1] == "0")
            // The counter spins in user mode: its instruction pointers are low (user) addresses.
            #expect(rip > 0 && rip < 0x8000_0000_0000, "rip \(fields[2])")
        }
        #expect(times == times.sorted(), "sample times go forward")
    }
}
