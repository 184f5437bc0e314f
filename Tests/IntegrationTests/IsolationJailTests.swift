import Foundation
import Testing

/// The jail: namespaces, pivot_root into a per-VM directory, an unprivileged user, no capabilities.
@Suite(.enabled { try TestEnvironment.available("IsolationJailTests", .kvm, .root, .micro("counter")) })
struct IsolationJailTests {
    static let nobody: UInt32 = 65534

    @Test func jailHidesHostPaths() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        // Outside the jail the hook can read /etc/passwd ...
        let free = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"],
                                    environment: ["VIREO_TEST_OPEN_PATH": "/etc/passwd"])
        defer { free.stop() }
        #expect(free.waitForExit(timeout: 30) == 0)
        #expect(free.errorOutput.contains("vireo: test hook: opened /etc/passwd"), "stderr: \(free.errorOutput)")
        // ... inside it the file does not exist.
        let jailed = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--jail", "--uid", "nobody"],
                                      environment: ["VIREO_TEST_OPEN_PATH": "/etc/passwd"])
        defer { jailed.stop() }
        #expect(jailed.waitForExit(timeout: 30) == 0, "stderr: \(jailed.errorOutput)")
        #expect(jailed.errorOutput.contains("vireo: test hook: cannot open /etc/passwd: No such file or directory"),
                "stderr: \(jailed.errorOutput)")
        #expect(jailed.output.contains("VIREO-MICRO poweroff"))
    }

    @Test func jailedVMMRunsUnprivilegedInItsOwnNamespaces() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let dir = try HostProcess.directory("jail", owner: IsolationJailTests.nobody)
        let jailDir = dir + "-root"
        let socket = dir + "/api.sock"
        let log = dir + "/console.log"
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--no-console",
                                                 "--jail-dir", jailDir, "--uid", "\(IsolationJailTests.nobody)",
                                                 "--console-log", log, "--api-socket", socket, "-v"])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        #expect(vmm != guest.process.processIdentifier, "a jailed VMM runs under a supervisor")
        #expect(HostProcess.status(vmm, "Uid")?.hasPrefix("65534\t65534\t65534") == true)
        #expect(HostProcess.status(vmm, "CapEff") == "0000000000000000")
        #expect(HostProcess.status(vmm, "CapBnd") == "0000000000000000")
        #expect(HostProcess.status(vmm, "NoNewPrivs") == "1")
        // PID 1 of its own PID namespace.
        #expect(HostProcess.status(vmm, "NSpid")?.hasSuffix("\t1") == true)
        for kind in ["mnt", "pid", "ipc", "uts", "net"] {
            let own = HostProcess.namespace(getpid(), kind)
            #expect(HostProcess.namespace(vmm, kind) != own, "\(kind) namespace is shared")
        }
        // The console log and API socket still work through their mirrored directory.
        let deadline = Date().addingTimeInterval(20)
        while !((HostProcess.read(log) ?? "").contains("count=2")) && Date() < deadline { usleep(50_000) }
        #expect((HostProcess.read(log) ?? "").contains("count=2"), "console log: \(HostProcess.read(log) ?? "none")")
        let fd = try UnixSocket.connect(socket)
        try UnixSocket.send(fd, "status\n")
        let status = try UnixSocket.readLine(fd, timeout: 10)
        close(fd)
        #expect(status.contains("\"jail\":\"\(jailDir)\"") && status.contains("\"uid\":65534"), "status: \(status)")
        #expect(status.contains("\"capabilities\":\"none\""), "status: \(status)")
        // The host sees only an empty directory where the jail is.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: jailDir)) == [])
        let stopFD = try UnixSocket.connect(socket)
        try UnixSocket.send(stopFD, "stop\n")
        _ = try? UnixSocket.readLine(stopFD, timeout: 10)
        close(stopFD)
        #expect(guest.waitForExit(timeout: 20) == 0, "stderr: \(guest.errorOutput)")
        #expect(!FileManager.default.fileExists(atPath: jailDir), "the jail directory was left behind")
        #expect(guest.errorOutput.contains("isolation: jail \(jailDir)"))
    }

    /// Issue 12: the network namespace is entered after the Machine is built, so a jailed VMM's TAP
    /// device is created in the host's namespace and passt runs there, holding its socket; the VMM
    /// itself ends up in an empty namespace of its own. (`DaemonTests/Linux` shows a guest getting
    /// DHCP through passt from a jailed VMM.)
    @Test(.enabled { try TestEnvironment.available("jailedNetworkBackendsStayInTheHostNamespace", .tun, .executable("/usr/bin/passt")) })
    func jailedNetworkBackendsStayInTheHostNamespace() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let tap = "vjail\(getpid() % 100_000)"
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--no-console",
                                                 "--jail", "--uid", "nobody", "--net", "user", "--net", "tap=\(tap)"])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        let ours = HostProcess.namespace(getpid(), "net")
        #expect(HostProcess.namespace(vmm, "net") != ours, "the VMM kept the host's network namespace")
        #expect(HostProcess.namespace(vmm, "mnt") != HostProcess.namespace(getpid(), "mnt"))
        // passt is the VMM's child, started before the unshare: in the host's namespace.
        let helpers = HostProcess.children(of: vmm).filter { (HostProcess.read("/proc/\($0)/comm") ?? "").hasPrefix("passt") }
        #expect(helpers.count == 1, "passt children: \(helpers)")
        for passt in helpers { #expect(HostProcess.namespace(passt, "net") == ours, "passt left the host's namespace") }
        // The TAP device exists in the host's namespace while the VMM holds it.
        #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"), "no \(tap) in the host's namespace")
        HostProcess.stopGently(guest)
        let deadline = Date().addingTimeInterval(5)
        while FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)") && Date() < deadline { usleep(20_000) }
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(tap)"), "\(tap) outlived the VMM")
    }

    @Test func jailedVMMKilledFromOutsideIsCleanedUp() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let jailDir = "/tmp/vireo-jail-killed-\(getpid())"
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin",
                                                 "--jail-dir", jailDir, "--uid", "nobody", "--cpu-weight", "200"])
        defer { HostProcess.stopGently(guest) }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier), "stderr: \(guest.errorOutput)")
        let cgroup = try #require(HostProcess.read("/proc/\(vmm)/cgroup")?.split(separator: "\n")
            .first { $0.contains("/vireo/vm-") }, "the VMM is in no vireo cgroup")
        kill(vmm, SIGKILL)
        #expect(guest.waitForExit(timeout: 20) == 137)
        #expect(guest.errorOutput.contains("vireo: the VMM was killed by signal 9"), "stderr: \(guest.errorOutput)")
        #expect(!FileManager.default.fileExists(atPath: jailDir))
        let path = String(cgroup.split(separator: ":", maxSplits: 2)[2])
        let leftovers = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"].filter {
            FileManager.default.fileExists(atPath: $0 + path)
        }
        #expect(leftovers.isEmpty, "cgroup \(path) was left behind")
    }

    @Test func killingTheSupervisorKillsTheVMM() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--jail",
                                                 "--uid", "nobody"])
        defer { guest.stop() }
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier))
        defer { kill(vmm, SIGKILL) }  // should it have survived
        defer { rmdir("/run/vireo/jail/vm-\(guest.process.processIdentifier)") }  // should the sweep below have failed
        kill(guest.process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while kill(vmm, 0) == 0 && HostProcess.read("/proc/\(vmm)/stat")?.contains(") Z ") != true && Date() < deadline {
            usleep(20_000)
        }
        #expect(kill(vmm, 0) != 0 || HostProcess.read("/proc/\(vmm)/stat")?.contains(") Z ") == true,
                "the VMM outlived its supervisor")

        // The SIGKILLed supervisor could not remove its jail directory; the next jailed VM's start
        // sweeps it, and leaves a `vm-<pid>` whose process is alive (this test's) alone.
        let stale = "/run/vireo/jail/vm-\(guest.process.processIdentifier)"
        _ = guest.waitForExit(timeout: 10)
        let live = "/run/vireo/jail/vm-\(getpid())"
        mkdir(live, 0o700)
        defer { rmdir(live) }
        #expect(FileManager.default.fileExists(atPath: stale), "the killed supervisor's jail directory")
        let next = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--jail", "--uid", "nobody"])
        defer { HostProcess.stopGently(next) }
        #expect(next.waitForOutput("count=1", timeout: 20), "stderr: \(next.errorOutput)")
        #expect(!FileManager.default.fileExists(atPath: stale), "a stale jail directory was left")
        #expect(FileManager.default.fileExists(atPath: live), "a live process's directory was removed")
    }

    @Test func jailedVMMSnapshotsAndRestores() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let dir = try HostProcess.directory("jail-snap", owner: IsolationJailTests.nobody)
        let socket = dir + "/api.sock"
        func request(_ line: String) throws -> String {
            let fd = try UnixSocket.connect(socket)
            defer { close(fd) }
            try UnixSocket.send(fd, line + "\n")
            return try UnixSocket.readLine(fd, timeout: 10)
        }
        let first = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--jail",
                                                 "--uid", "nobody", "--api-socket", socket])
        defer { HostProcess.stopGently(first) }
        #expect(first.waitForOutput("count=3", timeout: 30))
        #expect(try request("pause").contains("paused"))
        // The snapshot directory is under the API socket's directory, which the jail shares.
        #expect(try request("snapshot \(dir)/snap").contains("\"ok\":true"))
        _ = try request("stop")
        #expect(first.waitForExit(timeout: 20) == 0, "stderr: \(first.errorOutput)")
        let last = first.output.split(separator: "\n").last { $0.hasPrefix("count=") }.flatMap { Int($0.dropFirst(6)) } ?? 0
        let restored = try GuestProcess(arguments: ["run", "--restore", dir + "/snap", "--no-stdin", "--jail", "--uid", "nobody"])
        defer { HostProcess.stopGently(restored) }
        #expect(restored.waitForOutput("count=\(last + 2)", timeout: 30), "stderr: \(restored.errorOutput)")
        #expect(!restored.output.contains("count=0\n"), "the restored guest started over")
    }
}
