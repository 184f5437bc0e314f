import Foundation
import Testing
@testable import VMM

@Suite struct CgroupTests {
    /// This project's CI host: cgroup v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified.
    static let hybridMountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        50 31 0:40 /docker/abc /sys/fs/cgroup/cpu\\040acct ro,relatime - cgroup cgroup rw,cpu,cpuacct
        """

    @Test func parsesMountinfo() {
        let mounts = CgroupMount.parse(mountinfo: CgroupTests.hybridMountinfo)
        #expect(mounts.count == 5)
        #expect(mounts[0] == CgroupMount(version: 1, mountPoint: "/sys/fs/cgroup/cpu", root: "/", controllers: ["cpu"], readOnly: false))
        #expect(mounts[2].controllers.isEmpty)  // name=systemd is not a controller
        #expect(mounts[3].version == 2 && mounts[3].mountPoint == "/sys/fs/cgroup/unified")
        #expect(mounts[4] == CgroupMount(version: 1, mountPoint: "/sys/fs/cgroup/cpu acct", root: "/docker/abc",
                                         controllers: ["cpu", "cpuacct"], readOnly: true))
    }

    @Test func mapsHierarchyPathsThroughTheMountRoot() {
        let plain = CgroupMount(version: 1, mountPoint: "/m", root: "/", controllers: [], readOnly: false)
        #expect(plain.directory(for: "/") == "/m")
        #expect(plain.directory(for: "/a/b") == "/m/a/b")
        let container = CgroupMount(version: 1, mountPoint: "/m", root: "/docker/abc", controllers: [], readOnly: false)
        #expect(container.directory(for: "/docker/abc") == "/m")
        #expect(container.directory(for: "/docker/abc/x") == "/m/x")
        #expect(container.directory(for: "/other") == nil)
    }

    @Test func parsesMembership() {
        let membership = CgroupMembership.parse("""
            4:memory:/process_api/eb06
            1:cpu,cpuacct:/
            9:name=systemd:/
            0::/user.slice
            """)
        #expect(membership.unified == "/user.slice")
        #expect(membership.v1["memory"] == "/process_api/eb06")
        #expect(membership.v1["cpuacct"] == "/")
    }

    /// A fake hierarchy in a temporary directory.
    private func fakeHierarchy(_ name: String, controllers: String?) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-cgtest-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let controllers { try controllers.write(toFile: dir + "/cgroup.controllers", atomically: true, encoding: .utf8) }
        return dir
    }

    @Test func prefersV2AndFallsBackToV1PerController() throws {
        let unified = try fakeHierarchy("v2", controllers: "cpu io\n")
        let memory = try fakeHierarchy("v1mem", controllers: nil)
        let manager = CgroupManager(mountinfo: """
            1 0 0:1 / \(unified) rw - cgroup2 cgroup2 rw
            2 0 0:2 / \(memory) rw - cgroup cgroup rw,memory
            """, procCgroup: "0::/\n3:memory:/\n")
        let cpu = try manager.place("cpu", vmID: "vm-1", option: "--cpu-weight").get()
        #expect(cpu == CgroupPlacement(controller: "cpu", version: 2, parent: unified + "/vireo", directory: unified + "/vireo/vm-1"))
        let memoryPlacement = try manager.place("memory", vmID: "vm-1", option: "--memory-max").get()
        #expect(memoryPlacement.version == 1 && memoryPlacement.directory == memory + "/vireo/vm-1")
    }

    @Test func explainsWhyNoHierarchyWorks() throws {
        let unified = try fakeHierarchy("v2only", controllers: "io\n")
        let manager = CgroupManager(mountinfo: "1 0 0:1 / \(unified) rw - cgroup2 cgroup2 rw\n", procCgroup: "0::/\n")
        guard case let .failure(error) = manager.place("cpu", vmID: "vm-1", option: "--cpu-weight") else {
            Issue.record("expected a failure"); return
        }
        #expect(error.description == "--cpu-weight needs the cgroup cpu controller, but cgroup v2 at \(unified) does not offer the cpu controller and no cgroup v1 cpu hierarchy is mounted")
        let none = CgroupManager(mountinfo: "", procCgroup: "")
        guard case let .failure(missing) = none.place("memory", vmID: "vm-1", option: "--memory-max") else {
            Issue.record("expected a failure"); return
        }
        #expect(missing.description.contains("cgroup v2 is not mounted and no cgroup v1 memory hierarchy is mounted"))
        let readOnly = CgroupManager(mountinfo: "1 0 0:1 / /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu\n", procCgroup: "1:cpu:/\n")
        guard case let .failure(notWritable) = readOnly.place("cpu", vmID: "vm-1", option: "--cpu-max") else {
            Issue.record("expected a failure"); return
        }
        #expect(notWritable.description.contains("is not writable"))
    }

    @Test func weightsMapToSharesLikeSystemd() {
        #expect(CPUWeight.shares(forWeight: 100) == 1024)
        #expect(CPUWeight.shares(forWeight: 300) == 3072)
        #expect(CPUWeight.shares(forWeight: 1) == 10)
        #expect(CPUWeight.shares(forWeight: 10_000) == 102_400)
        #expect(CPUWeight.range == 1...10_000)
    }

    @Test func writesTheRightFilesPerVersion() {
        let settings = CgroupSettings(cpuWeight: 300, cpuMax: CPUMax(quotaMicroseconds: 20_000), memoryMax: 1 << 30)
        func writes(_ controller: String, _ version: Int) -> [String] {
            settings.writes(for: CgroupPlacement(controller: controller, version: version, parent: "/p", directory: "/p/vm"))
                .map { "\($0.0)=\($0.1)" }
        }
        #expect(writes("cpu", 2) == ["cpu.weight=300", "cpu.max=20000 100000"])
        #expect(writes("cpu", 1) == ["cpu.shares=3072", "cpu.cfs_period_us=100000", "cpu.cfs_quota_us=20000"])
        #expect(writes("memory", 2) == ["memory.max=1073741824"])
        #expect(writes("memory", 1) == ["memory.limit_in_bytes=1073741824"])
    }

    @Test func parsesCPUMax() {
        #expect(CPUMax.parse("20ms/100ms") == CPUMax(quotaMicroseconds: 20_000, periodMicroseconds: 100_000))
        #expect(CPUMax.parse("50000/100000") == CPUMax(quotaMicroseconds: 50_000, periodMicroseconds: 100_000))
        #expect(CPUMax.parse("150ms") == CPUMax(quotaMicroseconds: 150_000, periodMicroseconds: 100_000))
        #expect(CPUMax.parse("1s/1s") == CPUMax(quotaMicroseconds: 1_000_000, periodMicroseconds: 1_000_000))
        #expect(CPUMax.parse("500us/10ms") == CPUMax(quotaMicroseconds: 500, periodMicroseconds: 10_000))
        for bad in ["", "/", "20ms/", "x", "20ms/100ms/1", "-5", "1.5ms", "20 ms"] {
            #expect(CPUMax.parse(bad) == nil, "\(bad)")
        }
        #expect(CPUMax.parse("500us/10ms")?.problem?.contains("at least 1ms") == true)
        #expect(CPUMax.parse("20ms/2s")?.problem?.contains("between 1ms and 1s") == true)
        #expect(CPUMax.parse("20ms/100ms")?.problem == nil)
        #expect(CPUMax.parse("20ms/100ms")?.cpus == 0.2)
    }

    @Test func settingsRoundTripToFlags() {
        var settings = IsolationSettings()
        #expect(settings.commandLineArguments == ["--seccomp", "on"])
        settings.seccomp = .kill
        settings.jail = true
        settings.user = "vireo"
        settings.cpuWeight = 300
        settings.cpuMax = CPUMax(quotaMicroseconds: 20_000)
        settings.memoryMax = 600 << 20
        settings.cpuAffinity = [0, 1, 3]
        #expect(settings.commandLineArguments == ["--seccomp", "kill", "--jail", "--uid", "vireo", "--cpu-weight", "300",
                                                 "--cpu-max", "20000/100000", "--memory-max", "629145600b",
                                                 "--cpu-affinity", "0-1,3"])
        #expect(settings.usesCgroups)
        #expect(!IsolationSettings().usesCgroups)
    }

    @Test func auditRecordsNameTheSyscall() {
        let line = "6,1234,4471531713,-;audit: type=1326 audit(1795603130.620:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=11617 comm=\"vireo-vcpu0\" exe=\"/x/vireo\" sig=31 arch=c000003e syscall=59 compat=0 ip=0x7f999011f829 code=0x80000000"
        #expect(Supervisor.seccompSyscall(inAuditRecord: line, pid: 11617) == 59)
        #expect(Supervisor.seccompSyscall(inAuditRecord: line, pid: 1161) == nil)
        #expect(Supervisor.seccompSyscall(inAuditRecord: "audit: type=1300 pid=11617 syscall=59", pid: 11617) == nil)
    }
}
