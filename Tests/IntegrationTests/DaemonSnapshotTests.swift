import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Snapshots through the daemon and VMs restored from them (clones), with real micro-guests.
    @Suite struct Snapshots {
        /// The counter values a console log holds, in order.
        static func counts(_ log: String) -> [Int] {
            log.split(separator: "\n").compactMap { line in
                line.range(of: "count=").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }
            }
        }

        @Test func snapshotThenRestoreTwoClonesThatContinueTheCount() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            // A disk too, so that the clones can each take a copy-on-write overlay over its copy.
            let disk = daemon.directory + "/disk.img"
            try Data(count: 1 << 20).write(to: URL(fileURLWithPath: disk))
            try daemon.create("orig", kernel: counter, [("memoryMiB", .int(32)), ("disks", .array([.object([("path", .string(disk))])]))])
            try daemon.action("orig", "start")
            #expect(daemon.waitForLog("orig", "count=3"), "console log: \(daemon.logs("orig"))")
            // The daemon runs VMs with the lean VMM binary that sits next to vireo.
            let vmmPID = try #require(try daemon.vm("orig").pid)
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(vmmPID)/exe")) ?? ""
            #expect(executable.hasSuffix("/vireo-vmm"), "the VMM runs \(executable)")

            // A snapshot of a running VM: paused for it, resumed after.
            let snapshot = daemon.directory + "/snap"
            var (status, out, err) = try daemon.cli(["snapshot", "orig", snapshot])
            #expect(status == 0, "snapshot: \(err)")
            #expect(out.hasPrefix(snapshot + " (") && out.hasSuffix(" ms)\n"), "snapshot printed: \(out)")
            let atSnapshot = Snapshots.counts(daemon.logs("orig")).last ?? 0
            #expect(FileManager.default.fileExists(atPath: snapshot + "/state.bin"))
            let base = daemon.directory + "/base.img"
            try FileManager.default.copyItem(atPath: disk, toPath: base)
            #expect(try daemon.vm("orig").state == "running")
            #expect(daemon.waitForLog("orig", "count=\(atSnapshot + 2)"), "the original keeps running after its snapshot")

            // Two clones: one through the CLI, one through the API; each continues from the snapshot's count.
            let overlays = [1, 2].map { daemon.directory + "/clone\($0).ovl" }
            (status, out, err) = try daemon.cli(["restore", snapshot, "--name", "clone1", "--disk", "\(overlays[0]),backing=\(base)"])
            #expect(status == 0 && out == "clone1\n", "restore: \(out) \(err)")
            let created = try daemon.request("POST", "/vms", json: .object([
                ("name", .string("clone2")), ("restore", .string(snapshot)),
                ("disks", .array([.object([("path", .string(overlays[1])), ("backing", .string(base))])])),
            ]))
            #expect(created.status == 201, "\(created.text)")
            #expect(try daemon.action("clone2", "start").state == "running")
            for clone in ["clone1", "clone2"] {
                let vm = try daemon.vm(clone)
                #expect(vm.state == "running")
                #expect(vm["restore"]?.stringValue == snapshot)
                #expect(vm["memoryMiB"]?.intValue == 32 && vm["cpus"]?.intValue == 1, "\(vm)")
                #expect(vm["kernel"]?.stringValue == counter)
                #expect(vm["disks"]?.arrayValue?.first?["backing"]?.stringValue == base, "\(vm)")
                #expect(daemon.waitForLog(clone, "count=\(atSnapshot + 3)"), "\(clone): \(daemon.logs(clone))")
                let counts = Snapshots.counts(daemon.logs(clone))
                #expect((counts.first ?? 0) > 1 && (counts.first ?? 0) >= atSnapshot - 1,
                        "\(clone) continues from the snapshot's count \(atSnapshot), it does not start over: \(counts.prefix(5))")
            }
            for overlay in overlays {
                #expect(FileManager.default.fileExists(atPath: overlay) && FileManager.default.fileExists(atPath: overlay + ".map"),
                        "the clone's VMM created its overlay \(overlay)")
            }
            let pids = try ["orig", "clone1", "clone2"].map { try daemon.vm($0).pid }
            #expect(Set(pids.compactMap { $0 }).count == 3, "three VMM processes: \(pids)")

            // A restored VM restarts from the snapshot again.
            try daemon.action("clone2", "stop")
            try daemon.action("clone2", "start")
            #expect(daemon.waitForLog("clone2", "count=\(atSnapshot + 3)"))

            // A paused VM stays paused across its snapshot.
            try daemon.action("orig", "pause")
            let second = try daemon.request("POST", "/vms/orig/snapshot", json: .object([("path", .string(daemon.directory + "/snap2"))]))
            #expect(second.status == 201, "\(second.text)")
            #expect(second.json?["snapshot"]?["ms"]?.intValue != nil)
            #expect(try daemon.vm("orig").state == "paused")
        }

        @Test func badSnapshotsAndTargetsAreRefused() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("src", kernel: counter, [("memoryMiB", .int(32))])

            // Only a running or paused VM has something to snapshot.
            let early = try daemon.request("POST", "/vms/src/snapshot", json: .object([("path", .string(daemon.directory + "/s"))]))
            #expect(early.status == 409 && early.errorMessage.contains("it is defined"), "\(early.text)")
            try daemon.action("src", "start")
            #expect(daemon.waitForLog("src", "count=1"))

            func refused(_ body: JSONValue, _ status: Int, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
                let reply = try daemon.request("POST", "/vms/src/snapshot", json: body)
                #expect(reply.status == status && reply.errorMessage.contains(text), "\(reply.status) \(reply.text)", sourceLocation: sourceLocation)
            }
            try refused(.object([]), 422, "'path' is required")
            try refused(.object([("path", .string("relative"))]), 422, "absolute")
            try refused(.object([("path", .string(daemon.directory + "/no/such/parent/s"))]), 422, "does not exist")
            try refused(.object([("path", .string(daemon.stateDirectory))]), 422, "not empty")
            try refused(.object([("path", .int(3))]), 422, "must be a string")
            try refused(.object([("path", .string(daemon.directory + "/x")), ("force", .bool(true))]), 422, "unknown field 'force'")
            #expect(try daemon.request("POST", "/vms/none/snapshot", json: .object([("path", .string(daemon.directory + "/n"))])).status == 404)

            let good = daemon.directory + "/good"
            #expect(try daemon.request("POST", "/vms/src/snapshot", json: .object([("path", .string(good))])).status == 201)
            // The snapshot refuses to be overwritten.
            try refused(.object([("path", .string(good))]), 422, "not empty")

            // Tampered, truncated and incomplete copies: refused when the VM is defined, nothing created.
            func copy(_ name: String) throws -> String {
                let path = daemon.directory + "/" + name
                try FileManager.default.copyItem(atPath: good, toPath: path)
                return path
            }
            let tampered = try copy("tampered")
            var state = try Data(contentsOf: URL(fileURLWithPath: tampered + "/state.bin"))
            state[state.count / 2] ^= 0x5A
            try state.write(to: URL(fileURLWithPath: tampered + "/state.bin"))
            let truncated = try copy("truncated")
            try state.prefix(state.count / 3).write(to: URL(fileURLWithPath: truncated + "/state.bin"))
            let noMemory = try copy("nomemory")
            try FileManager.default.removeItem(atPath: noMemory + "/memory.bin")
            let stateBefore = try Data(contentsOf: URL(fileURLWithPath: tampered + "/state.bin"))
            for (directory, text) in [(tampered, "checksum"), (truncated, "snapshot"), (noMemory, "memory.bin"),
                                      (daemon.directory + "/absent", "no such directory")] {
                let reply = try daemon.request("POST", "/vms", json: .object([("name", .string("bad")), ("restore", .string(directory))]))
                #expect(reply.status == 422 && reply.json?["error"]?["field"]?.stringValue == "restore" && reply.errorMessage.contains(text),
                        "\(directory): \(reply.status) \(reply.text)")
            }
            #expect(try daemon.request("GET", "/vms/bad").status == 404, "nothing half-created")
            #expect(try Data(contentsOf: URL(fileURLWithPath: tampered + "/state.bin")) == stateBefore, "the snapshot is not modified")
            let withKernel = try daemon.request("POST", "/vms", json: .object([
                ("name", .string("bad")), ("restore", .string(good)), ("cpus", .int(2)),
            ]))
            #expect(withKernel.status == 422 && withKernel.errorMessage.contains("comes from the snapshot"), "\(withKernel.text)")
            let (status, _, err) = try daemon.cli(["restore", tampered, "--name", "bad"])
            #expect(status == 2 && err.contains("checksum"), "CLI: \(err)")
        }

        @Test func resourcesAndPinningApplyToDaemonVMs() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let cpu = HostProcess.onlineCPUs.last ?? 0
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            var (status, _, err) = try daemon.cli(["create", "pinned", "--kernel", counter, "--memory", "32M",
                                                   "--cpu-weight", "300", "--cpu-max", "50ms/100ms", "--memory-max", "128M",
                                                   "--cpu-affinity", "\(cpu)"])
            #expect(status == 0, "create: \(err)")
            try daemon.action("pinned", "start")
            #expect(daemon.waitForLog("pinned", "count=1"))
            let vm = try daemon.vm("pinned")
            // Read back: what was asked (the definition) and what the VMM applied (its live status).
            #expect(vm["resources"]?["cpuWeight"]?.intValue == 300)
            #expect(vm["resources"]?["cpuMax"]?["quotaMicros"]?.intValue == 50_000)
            #expect(vm["resources"]?["memoryMaxMiB"]?.intValue == 128)
            #expect(vm["resources"]?["cpuAffinity"]?.arrayValue?.compactMap(\.intValue) == [Int64(cpu)])
            let isolation = try #require(vm["vmm"]?["isolation"], "inspect: \(vm)")
            #expect(isolation["cpu_weight"]?.intValue == 300 && isolation["cpu_affinity"]?.stringValue == "\(cpu)", "\(isolation)")
            // The daemon watches the VMM's supervisor (cgroups need one); the VMM is its child.
            let watched = try #require(vm.pid)
            let pid = try #require(HostProcess.vmm(of: watched))
            let vcpus = HostProcess.vcpuThreads(of: pid)
            #expect(vcpus.count == 1)
            for tid in vcpus { #expect(HostProcess.status(pid, thread: tid, "Cpus_allowed_list") == "\(cpu)", "vCPU thread") }
            for thread in HostProcess.threads(of: pid) where thread.name.hasPrefix("vireo") {
                // A short-lived thread may be gone by the time its status is read.
                guard let allowed = HostProcess.status(pid, thread: thread.tid, "Cpus_allowed_list") else { continue }
                #expect(allowed == "\(cpu)", "\(thread.name)")
            }
            let cgroups = isolation["cgroups"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
            #expect(!cgroups.isEmpty, "\(isolation)")
            for path in cgroups {
                #expect((HostProcess.read(path + "/cgroup.procs") ?? "").split(separator: "\n").contains(Substring(String(pid))))
                if let shares = HostProcess.read(path + "/cpu.shares") { #expect(shares == "3072\n") }
                if let weight = HostProcess.read(path + "/cpu.weight") { #expect(weight == "300\n") }
                if let quota = HostProcess.read(path + "/cpu.cfs_quota_us") { #expect(quota == "50000\n") }
                if let limit = HostProcess.read(path + "/memory.limit_in_bytes") { #expect(limit == "134217728\n") }
                if let limit = HostProcess.read(path + "/memory.max") { #expect(limit == "134217728\n") }
            }
            try daemon.action("pinned", "stop")
            for path in cgroups { #expect(!FileManager.default.fileExists(atPath: path), "\(path) was left behind") }

            // Bad settings: one clear 4xx before anything starts.
            (status, _, err) = try daemon.cli(["create", "bad", "--kernel", counter, "--cpu-affinity", "4000"])
            #expect(status == 2 && err.contains("CPU 4000 does not exist"), "\(err)")
            (status, _, err) = try daemon.cli(["create", "bad", "--kernel", counter, "--cpu-weight", "0"])
            #expect(status == 2 && err.contains("resources.cpuWeight"), "\(err)")
            (status, _, err) = try daemon.cli(["create", "bad", "--kernel", counter, "--uid", "no-such-user-vireo"])
            #expect(status == 2 && err.contains("no user 'no-such-user-vireo'"), "\(err)")
            (status, _, err) = try daemon.cli(["create", "bad", "--kernel", counter, "--disk", "/no/such.img"])
            #expect(status == 2 && err.contains("disks[0].path"), "\(err)")
            #expect(try daemon.request("GET", "/vms/bad").status == 404)
        }

        /// A daemon VM confined by its definition: jailed, unprivileged, seccomp in kill mode. The daemon
        /// hands the VM's directory to that user, since the VMM keeps writing its log and socket there.
        @Test func jailedUnprivilegedDaemonVM() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let nobody = try #require(getpwnam("nobody")?.pointee.pw_uid, "no 'nobody' user on this host")
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let (status, _, err) = try daemon.cli(["create", "jailed", "--kernel", counter, "--memory", "32M",
                                                   "--jail", "--uid", "nobody", "--seccomp", "kill"])
            #expect(status == 0, "create: \(err)")
            #expect(try daemon.action("jailed", "start").state == "running")
            #expect(daemon.waitForLog("jailed", "count=2"), "console log: \(daemon.logs("jailed"))")
            let vm = try daemon.vm("jailed")
            #expect(vm["isolation"]?["jail"]?.boolValue == true && vm["isolation"]?["user"]?.stringValue == "nobody")
            let applied = try #require(vm["vmm"]?["isolation"], "inspect: \(vm)")
            #expect(applied["jail"]?.stringValue != nil, "\(applied)")
            #expect(applied["uid"]?.intValue == Int64(nobody) && applied["capabilities"]?.stringValue == "none", "\(applied)")
            #expect(applied["seccomp"]?.stringValue == "kill")
            let watched = try #require(vm.pid)
            let vmm = try #require(HostProcess.vmm(of: watched))
            #expect(HostProcess.status(vmm, "Uid")?.split(separator: "\t").first.map(String.init) == "\(nobody)")
            #expect(try daemon.action("jailed", "stop").state == "stopped")
        }
    }
}
