import Foundation
import Testing

/// cgroup limits (v2 where the host offers the controller, else v1) and vCPU affinity, measured
/// on busy guests: the counter micro-guest spins on rdtsc in user mode.
@Suite(.serialized, .enabled { try TestEnvironment.available("IsolationResourceTests", .kvm, .root, .micro("counter")) })
struct IsolationResourceTests {
    private func startCounter(_ extra: [String]) throws -> GuestProcess {
        let kernel = try #require(TestEnvironment.micro("counter"))
        return try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--no-console"] + extra)
    }

    private func waitForSocket(_ path: String) {
        let deadline = Date().addingTimeInterval(20)
        while access(path, F_OK) != 0 && Date() < deadline { usleep(20_000) }
    }

    /// CPU time each VMM gets over `seconds`, in nanoseconds.
    private func cpuTime(_ pids: [Int32], over seconds: Double) -> [Double] {
        let before = pids.map(HostProcess.cpuNanoseconds)
        usleep(UInt32(seconds * 1_000_000))
        return zip(pids, before).map { Double(HostProcess.cpuNanoseconds($0) - $1) }
    }

    @Test func cpuWeightsShareOneCPUOneToThree() throws {
        let cpu = HostProcess.onlineCPUs.last ?? 0
        let light = try startCounter(["--cpu-weight", "100", "--cpu-affinity", "\(cpu)"])
        defer { HostProcess.stopGently(light) }
        let heavy = try startCounter(["--cpu-weight", "300", "--cpu-affinity", "\(cpu)"])
        defer { HostProcess.stopGently(heavy) }
        let lightVMM = try #require(HostProcess.vmm(of: light.process.processIdentifier), "stderr: \(light.errorOutput)")
        let heavyVMM = try #require(HostProcess.vmm(of: heavy.process.processIdentifier), "stderr: \(heavy.errorOutput)")
        usleep(500_000)  // both guests in their busy loop
        let used = cpuTime([lightVMM, heavyVMM], over: 10)
        let ratio = used[1] / max(1, used[0])
        TestEnvironment.log("cpu-weight 100 vs 300 on CPU \(cpu) over 10 s: \(Int(used[0] / 1e6)) ms vs \(Int(used[1] / 1e6)) ms, ratio \(ratio)")
        #expect(abs(ratio - 3) <= 3 * 0.15, "CPU time ratio \(ratio), expected 3 ± 15%")
        #expect(used[0] + used[1] > 5e9, "the two guests were not busy enough to compete: \(used)")
    }

    @Test func cpuMaxCapsTheVM() throws {
        let guest = try startCounter(["--cpu-max", "20ms/100ms"])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        usleep(500_000)
        let used = cpuTime([vmm], over: 4)[0] / 4e9
        TestEnvironment.log("cpu-max 20ms/100ms: \(used) CPU")
        #expect(used <= 0.25, "the VM used \(used) of a CPU under a 20% cap")
        #expect(used >= 0.05, "the VM did not run: \(used)")
    }

    @Test func vcpuAffinityMatchesTheFlag() throws {
        let cpu = HostProcess.onlineCPUs.last ?? 0
        let socket = "/tmp/vireo-affinity-\(getpid()).sock"
        let guest = try startCounter(["--cpu-affinity", "\(cpu)", "--api-socket", socket])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        let vcpus = HostProcess.vcpuThreads(of: vmm)
        #expect(vcpus.count == 1)
        // vCPU threads and every other VMM thread (the VM's cgroup then stays on those CPUs).
        for thread in HostProcess.threads(of: vmm) where thread.name.hasPrefix("vireo") {
            #expect(HostProcess.status(vmm, thread: thread.tid, "Cpus_allowed_list") == "\(cpu)", "\(thread.name)")
        }
        // The supervisor is not pinned.
        if vmm != guest.process.processIdentifier {
            #expect(HostProcess.status(guest.process.processIdentifier, "Cpus_allowed_list") == HostProcess.allowedCPUList)
        }
        waitForSocket(socket)
        let status = try UnixSocket.request(socket, "status", timeout: 10)
        #expect(status.contains("\"cpu_affinity\":\"\(cpu)\"") && status.contains("\"vcpu\":0,\"tid\":\(vcpus[0]),\"cpus\":\"\(cpu)\""),
                "status: \(status)")
    }

    @Test func cgroupsAreReadableAndRemovedWhenTheVMEnds() throws {
        let socket = "/tmp/vireo-cgroup-\(getpid()).sock"
        let guest = try startCounter(["--cpu-weight", "300", "--cpu-max", "50ms/100ms", "--memory-max", "128M",
                                      "--api-socket", socket, "-v"])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        waitForSocket(socket)
        let status = try UnixSocket.request(socket, "status", timeout: 10)
        #expect(status.contains("\"cpu_weight\":300") && status.contains("\"cpu_max\":\"50000 100000\"")
                && status.contains("\"memory_max\":134217728"), "status: \(status)")
        // Every cgroup the API names exists, holds the VMM, and says what was asked.
        let paths = status.split(separator: "\"path\":\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
        #expect(!paths.isEmpty, "status: \(status)")
        for path in paths {
            let procs = HostProcess.read(path + "/cgroup.procs") ?? ""
            #expect(procs.split(separator: "\n").contains(Substring(String(vmm))), "\(path) does not hold the VMM")
            if let shares = HostProcess.read(path + "/cpu.shares") { #expect(shares == "3072\n") }
            if let weight = HostProcess.read(path + "/cpu.weight") { #expect(weight == "300\n") }
            if let quota = HostProcess.read(path + "/cpu.cfs_quota_us") { #expect(quota == "50000\n") }
            if let max = HostProcess.read(path + "/cpu.max") { #expect(max == "50000 100000\n") }
            if let limit = HostProcess.read(path + "/memory.limit_in_bytes") { #expect(limit == "134217728\n") }
            if let limit = HostProcess.read(path + "/memory.max") { #expect(limit == "134217728\n") }
        }
        #expect(guest.errorOutput.contains("isolation: cgroup cpu: v"), "stderr: \(guest.errorOutput)")
        _ = try UnixSocket.request(socket, "stop", timeout: 10)
        #expect(guest.waitForExit(timeout: 20) == 0, "stderr: \(guest.errorOutput)")
        for path in paths {
            #expect(!FileManager.default.fileExists(atPath: path), "\(path) was left behind")
        }
    }
}
