import Foundation
import Images
import Testing

/// containerd's shim v2 runtime `io.containerd.vireo.v2` (issue 15) driven by Debian's containerd and
/// `ctr`, on private directories and sockets: an image the test builds is imported with `ctr image
/// import`, and `ctr run --runtime io.containerd.vireo.v2` runs it in a microVM (one warm-up boot,
/// then warm-start restores). Afterwards no process, mount or file of the container is left.
// Serialized: each test boots VMs on a machine that is often loaded already; one at a time keeps
// them within their timeouts (and their containerds' and ctr runs' timings apart).
@Suite(.serialized, .enabled { try TestEnvironment.available("ContainerdShimTests", .kvm, .root, .kernel, .executable("/usr/bin/containerd"),
                                                .executable("/usr/bin/ctr"), .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs"),
                                                .executable("/bin/tar")) })
struct ContainerdShimTests {
    static let reference = "docker.io/vireo-test/busybox:latest"
    static let runtime = "io.containerd.vireo.v2"

    /// The busybox image as an OCI archive named by `io.containerd.image.name` (what `ctr image import` names it by).
    func imageArchive(in directory: String) throws -> String {
        let layout = directory + "/image"
        try TestImages.oneLayer(at: layout)
        let indexPath = layout + "/index.json"
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var manifests = index["manifests"] as! [[String: Any]]
        manifests[0]["annotations"] = ["io.containerd.image.name": ContainerdShimTests.reference, "org.opencontainers.image.ref.name": "latest"]
        index["manifests"] = manifests
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        let archive = directory + "/image.tar"
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["-C", layout, "-cf", archive, "."]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else { throw ImageError("tar of the test image failed") }
        return archive
    }

    func environment(_ directory: String) throws -> [String: String] {
        let vireo = TestEnvironment.vireoBinary
        let binaries = (vireo as NSString).deletingLastPathComponent
        guard FileManager.default.isExecutableFile(atPath: binaries + "/containerd-shim-vireo-v2") else {
            throw ImageError("containerd-shim-vireo-v2 is not built next to \(vireo) (swift build)")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = binaries + ":" + (environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        environment["VIREO_BIN"] = vireo
        environment["VIREO_STATE_DIR"] = directory + "/vireo-state"
        environment["VIREO_IMAGE_INITRAMFS"] = try TestImages.initramfs()
        return environment
    }

    /// Polls (bounded) until `condition` holds.
    func eventually(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(200_000)
        }
        return condition()
    }

    /// What must be gone once a container is: its processes (any command line naming the test
    /// directory, containerd aside), mounts under the directory, vireo's run directories, the
    /// task's bundle and the shim's socket.
    func expectNothingLeft(_ daemon: ContainerdDaemon, _ container: String, _ comment: Comment) {
        let directory = daemon.directory
        let bundle = "\(directory)/state/io.containerd.runtime.v2.task/default/\(container)"
        let clean = eventually(30) {
            ContainerdDaemon.processes(mentioning: directory, except: daemon.pid).isEmpty
                && ContainerdDaemon.mounts(under: directory).isEmpty
                && ((try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-state/images/runs")) ?? []).isEmpty
                && !FileManager.default.fileExists(atPath: bundle)
                && ((try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-shim")) ?? []).isEmpty
        }
        let processes = ContainerdDaemon.processes(mentioning: directory, except: daemon.pid).map { pid in
            String(decoding: (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        }
        #expect(clean, """
            \(comment): left behind: processes \(processes), mounts \(ContainerdDaemon.mounts(under: directory)), \
            runs \((try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-state/images/runs")) ?? []), \
            bundle \(FileManager.default.fileExists(atPath: bundle)), \
            sockets \((try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-shim")) ?? []); containerd log: \(daemon.logTail)
            """)
    }

    @Test func ctrRunPrintsTheOutputAndExitStatusAndLeavesNothing() throws {
        let directory = try TestEnvironment.freshDirectory("vireo-ctrd").path
        let archive = try imageArchive(in: directory)
        let daemon = try ContainerdDaemon(directory: directory, environment: try environment(directory))
        defer {
            // After a failure: no shim, VM or mount outlives the test.
            daemon.stop()
            for pid in ContainerdDaemon.processes(mentioning: directory, except: nil) { kill(pid, SIGKILL) }
            for mount in ContainerdDaemon.mounts(under: directory).reversed() { umount2(mount, Int32(MNT_DETACH)) }
            try? FileManager.default.removeItem(atPath: directory)
        }
        let imported = try daemon.ctr(["image", "import", archive])
        try #require(imported.status == 0, "ctr image import: \(imported.output) \(imported.errors)")

        // The first run also boots the guest once for the warm-start snapshot (vireo's progress line).
        let first = try daemon.ctr(["run", "--runtime", ContainerdShimTests.runtime, "--rm", ContainerdShimTests.reference, "first",
                                    "sh", "-c", "echo hi; exit 3"], timeout: 900)
        #expect(first.status == 3 && first.output == "hi\n", "ctr run: status \(first.status), stdout \(first.output.debugDescription), stderr \(first.errors); containerd log: \(daemon.logTail)")
        TestEnvironment.log("containerd: first ctr run (warm-up boot + restore) \(String(format: "%.1f", first.seconds)) s")
        expectNothingLeft(daemon, "first", "after the first ctr run --rm")

        // A second run restores the snapshot (the per-container cost); the image config's Env, ctr's
        // --env and --cwd reach the program through containerd's OCI spec.
        let second = try daemon.ctr(["run", "--runtime", ContainerdShimTests.runtime, "--rm", "--cwd", "/tmp", "--env", "WHO=ctr",
                                     ContainerdShimTests.reference, "second", "sh", "-c", "echo $GREETING $WHO from $PWD; exit 0"], timeout: 600)
        #expect(second.status == 0 && second.output == "hello ctr from /tmp\n", "second ctr run: status \(second.status), stdout \(second.output.debugDescription), stderr \(second.errors); containerd log: \(daemon.logTail)")
        TestEnvironment.log("containerd: warm ctr run to exit \(String(format: "%.1f", second.seconds)) s")
        expectNothingLeft(daemon, "second", "after the second ctr run --rm")

        // A terminal (ctr run -t, ResizePty), and an OOM kill (TaskOOM, 137).
        try checkTerminalRun(daemon)
        try checkHostOOM(daemon)

        // A detached container survives containerd restarting: containerd reconnects to the shim
        // through the bundle's address file, `ctr task exec` runs a second process in its VM, `ctr
        // task kill` (SIGTERM) reaches the program, and `ctr task delete` reports its exit status.
        let third = directory + "/third.log"
        let script = "echo $$ > /tmp/main.pid; trap 'echo got-TERM; exit 42' TERM; echo ready; sleep 600 & wait"
        let detached = try daemon.ctr(["run", "-d", "--log-uri", "file://" + third, "--runtime", ContainerdShimTests.runtime,
                                       ContainerdShimTests.reference, "third", "sh", "-c", script], timeout: 600)
        try #require(detached.status == 0, "ctr run -d: \(detached.status) \(detached.errors); containerd log: \(daemon.logTail)")
        let ready = eventually(300) { ((try? String(contentsOfFile: third, encoding: .utf8)) ?? "").contains("ready") }
        try #require(ready, "the detached program did not start: \(daemon.logTail)")
        daemon.stop()
        try daemon.start()
        let listed = try daemon.ctr(["task", "ls"])
        #expect(listed.output.contains("third") && listed.output.contains("RUNNING"), "ctr task ls after the restart: \(listed.output) \(listed.errors)")
        let processes = try daemon.ctr(["task", "ps", "third"])
        #expect(processes.status == 0 && processes.output.split(separator: "\n").count == 2, "ctr task ps: \(processes.output) \(processes.errors)")
        // The shim's socket is hostile input too: a frame longer than ttrpc's 4 MiB closes that
        // connection (nothing allocated), a request that is not protobuf gets an error response, and
        // the shim goes on serving containerd.
        let sockets = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-shim")) ?? []
        try #require(sockets.count == 1, "the shim's socket: \(sockets)")
        if let fd = RawShimSocket.connect(directory + "/vireo-shim/" + sockets[0]) {
            _ = write(fd, RawShimSocket.header(length: 0xffff_ffff, stream: 1, type: 1), 10)
            #expect(RawShimSocket.read(fd, 1).isEmpty, "an oversized frame did not close the connection")
            close(fd)
        } else { Issue.record("cannot connect to the shim's socket") }
        if let fd = RawShimSocket.connect(directory + "/vireo-shim/" + sockets[0]) {
            _ = write(fd, RawShimSocket.header(length: 3, stream: 7, type: 1) + [0xff, 0xff, 0xff], 13)
            let response = RawShimSocket.read(fd, 10)
            #expect(response.count == 10 && response[7] == 7 && response[8] == 2, "response to a garbage request: \(response)")
            close(fd)
        } else { Issue.record("cannot connect to the shim's socket") }

        // `ctr task exec`: a second process in the same VM (it sees the program's pid file, in the VM's
        // own root, and that process alive) with its own output and exit status.
        let exec = try daemon.ctr(["task", "exec", "--exec-id", "probe", "third", "sh", "-c",
                                   "kill -0 $(cat /tmp/main.pid) && echo exec-sees-main; exit 4"], timeout: 300)
        #expect(exec.status == 4 && exec.output == "exec-sees-main\n", "ctr task exec: status \(exec.status), stdout \(exec.output.debugDescription), stderr \(exec.errors); \(daemon.logTail)")
        let missing = try daemon.ctr(["task", "exec", "--exec-id", "missing", "third", "/no/such/program"], timeout: 300)
        #expect(missing.status == 127 && missing.output.contains("cannot run /no/such/program"), "exec of a missing program: \(missing.status) \(missing.output) \(missing.errors)")
        TestEnvironment.log("containerd: ctr task exec \(String(format: "%.1f", exec.seconds)) s")
        // Exec with stdin piped in, and with a terminal (-t, ResizePty).
        try checkExecTerminalAndStdin(daemon, container: "third")
        // A detached exec, stopped by `ctr task kill --exec-id` (the signal goes through the agent to
        // the exec's process group); `ctr task delete --exec-id` exits with its status.
        let execLog = directory + "/exec.log"
        let sleeper = try daemon.ctr(["task", "exec", "-d", "--log-uri", "file://" + execLog, "--exec-id", "sleeper", "third", "sh", "-c",
                                      "trap 'echo exec-TERM; exit 9' TERM; echo exec-ready; sleep 600 & wait"], timeout: 300)
        #expect(sleeper.status == 0, "ctr task exec -d: \(sleeper.status) \(sleeper.errors)")
        let execReady = eventually(300) { ((try? String(contentsOfFile: execLog, encoding: .utf8)) ?? "").contains("exec-ready") }
        #expect(execReady, "the detached exec did not start: \(daemon.logTail)")
        let execKilled = try daemon.ctr(["task", "kill", "--exec-id", "sleeper", "third"])
        #expect(execKilled.status == 0, "ctr task kill --exec-id: \(execKilled.errors)")
        #expect(eventually(120) { ((try? String(contentsOfFile: execLog, encoding: .utf8)) ?? "").contains("exec-TERM") },
                "the exec did not get SIGTERM: \((try? String(contentsOfFile: execLog, encoding: .utf8)) ?? "")")
        var execDeleted = try daemon.ctr(["task", "delete", "--exec-id", "sleeper", "third"])
        // Delete of a process still running is refused: retry while its status travels back.
        for _ in 0..<50 where execDeleted.status != 9 {
            usleep(200_000)
            execDeleted = try daemon.ctr(["task", "delete", "--exec-id", "sleeper", "third"])
        }
        #expect(execDeleted.status == 9, "ctr task delete --exec-id: \(execDeleted.status) \(execDeleted.errors)")
        // Least privilege: the VMM runs jailed (a mount namespace of its own) as a per-VM uid, and
        // exec above reached the guest through its vsock socket all the same.
        let vireoPID = processes.output.split(separator: "\n").dropFirst().first?.split(separator: " ").first.flatMap { Int32($0) } ?? 0
        try #require(vireoPID > 0, "the task's pid from ctr task ps: \(processes.output)")
        let family = [vireoPID] + HostProcesses.descendants(of: vireoPID)
        let ownNamespace = HostProcesses.mountNamespace(getpid())
        let jailed = family.filter { pid in
            let uid = HostProcesses.field("Uid:", of: pid).flatMap { UInt32($0) } ?? 0
            return (0x7E56_0000...0x7E56_FFFF).contains(uid) && HostProcesses.mountNamespace(pid) != nil && HostProcesses.mountNamespace(pid) != ownNamespace
        }
        #expect(!jailed.isEmpty, "no process of the container runs as a per-VM uid in a mount namespace of its own: \(family.map { "\($0): uid \(HostProcesses.field("Uid:", of: $0) ?? "?") \(HostProcesses.mountNamespace($0) ?? "?")" })")
        // Every process of the VM is in the container's cgroup (ctr's cgroupsPath /default/third).
        let memoryCgroups = Set(family.compactMap { HostProcesses.cgroupDirectory(of: $0, controller: "memory") })
        #expect(memoryCgroups.count == 1 && memoryCgroups.first?.hasSuffix("/default/third") == true, "the VM's cgroups: \(memoryCgroups)")

        // Stats: `ctr task metrics` decodes the shim's io.containerd.cgroups.v2.Metrics.
        func metric(_ name: String) throws -> UInt64? {
            let metrics = try daemon.ctr(["task", "metrics", "third"])
            #expect(metrics.status == 0, "ctr task metrics: \(metrics.status) \(metrics.errors)")
            let line = metrics.output.split(separator: "\n").first { $0.split(separator: " ").first.map(String.init) == name }
            return line?.split(separator: " ").last.flatMap { UInt64($0) }
        }
        let usage = try metric("memory.usage") ?? 0
        #expect(usage > 1 << 20, "memory.usage of a running VM: \(usage)")
        #expect(try metric("pids.current") ?? 0 >= 2, "pids.current")
        // Update (ctr 1.6 has no `task update`: the request containerd would forward, sent to the
        // shim's socket): runtime-spec LinuxResources JSON in an Any, applied to the cgroup.
        let limit: UInt64 = 3 << 30
        let resources = #"{"memory":{"limit":\#(limit)},"cpu":{"quota":50000,"period":100000}}"#
        let any = RawProtobuf.field(1, Array("types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".utf8))
            + RawProtobuf.field(2, Array(resources.utf8))
        if let fd = RawShimSocket.connect(directory + "/vireo-shim/" + sockets[0]) {
            let frame = RawProtobuf.taskRequest("Update", RawProtobuf.field(1, Array("third".utf8)) + RawProtobuf.field(2, any), stream: 9)
            _ = write(fd, frame, frame.count)
            let header = RawShimSocket.read(fd, 10)
            #expect(header.count == 10 && header[8] == 2, "Update's response header: \(header)")
            if header.count == 10 { _ = RawShimSocket.read(fd, Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])) }
            // A limit below the guest's RAM (256 MiB) is refused with a message, the limit kept.
            let small = #"{"memory":{"limit":67108864}}"#
            let refused = RawProtobuf.taskRequest("Update", RawProtobuf.field(1, Array("third".utf8))
                + RawProtobuf.field(2, RawProtobuf.field(1, Array("LinuxResources".utf8)) + RawProtobuf.field(2, Array(small.utf8))), stream: 11)
            _ = write(fd, refused, refused.count)
            let refusal = RawShimSocket.read(fd, 10)
            let length = refusal.count == 10 ? Int(refusal[0]) << 24 | Int(refusal[1]) << 16 | Int(refusal[2]) << 8 | Int(refusal[3]) : 0
            let message = String(decoding: RawShimSocket.read(fd, min(length, 4096)), as: UTF8.self)
            #expect(message.contains("below the VM's RAM"), "Update with a limit below the VM's RAM: \(message.debugDescription)")
            close(fd)
        } else { Issue.record("cannot connect to the shim's socket") }
        #expect(try metric("memory.usage_limit") == limit, "memory.usage_limit after Update")
        if let cpu = HostProcesses.cgroupDirectory(of: vireoPID, controller: "cpu") {
            let quota = (try? String(contentsOfFile: cpu + "/cpu.cfs_quota_us", encoding: .utf8))
                ?? (try? String(contentsOfFile: cpu + "/cpu.max", encoding: .utf8)) ?? ""
            #expect(quota.hasPrefix("50000"), "the cgroup's cpu quota after Update: \(quota) in \(cpu)")
        } else { Issue.record("the VM has no cpu cgroup") }
        let thirdCgroup = memoryCgroups.first ?? "/nonexistent"

        let killed = try daemon.ctr(["task", "kill", "third"])
        #expect(killed.status == 0, "ctr task kill: \(killed.errors)")
        let stopped = eventually(120) { ((try? daemon.ctr(["task", "ls"]).output) ?? "").contains("STOPPED") }
        #expect(stopped && ((try? String(contentsOfFile: third, encoding: .utf8)) ?? "").contains("got-TERM"),
                "after ctr task kill: \((try? String(contentsOfFile: third, encoding: .utf8)) ?? "") \(daemon.logTail)")
        let deleted = try daemon.ctr(["task", "delete", "third"])
        #expect(deleted.status == 0 && deleted.errors.contains("exit code 42"), "ctr task delete: status \(deleted.status) \(deleted.errors)")
        _ = try daemon.ctr(["container", "rm", "third"])
        expectNothingLeft(daemon, "third", "after killing and deleting the detached container")
        #expect(!FileManager.default.fileExists(atPath: thirdCgroup), "the container's cgroup \(thirdCgroup) is left")

        // A shim killed with SIGKILL: containerd runs `containerd-shim-vireo-v2 … delete`, which stops
        // the VM the dead shim left and cleans up.
        let fourth = directory + "/fourth.log"
        let started = try daemon.ctr(["run", "-d", "--log-uri", "file://" + fourth, "--runtime", ContainerdShimTests.runtime,
                                      ContainerdShimTests.reference, "fourth", "sh", "-c", "echo ready; sleep 600"], timeout: 600)
        try #require(started.status == 0, "ctr run -d: \(started.status) \(started.errors)")
        try #require(eventually(300) { ((try? String(contentsOfFile: fourth, encoding: .utf8)) ?? "").contains("ready") }, "fourth did not start: \(daemon.logTail)")
        let shims = ContainerdDaemon.processes(mentioning: "containerd-shim-vireo-v2", except: nil).filter { pid in
            String(decoding: (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                .contains(" -id fourth")
        }
        try #require(shims.count == 1, "the fourth container's shim: \(shims)")
        kill(shims[0], SIGKILL)
        expectNothingLeft(daemon, "fourth", "after the shim was killed")
        _ = try daemon.ctr(["container", "rm", "fourth"])
    }
}
