import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 16: `vireo serve --warm-pool N` keeps N `vireo-vmm pool` processes started, each with
    /// its VMM process forked ahead and its KVM VM made; a VM restored
    /// from a snapshot through the API is run by one of them, confined as a freshly started VMM is,
    /// and the pool refills, never above N, and is gone with the daemon.
    @Suite(.enabled { try TestEnvironment.available("DaemonTests.WarmPool", .root) })
    struct WarmPool {
        /// The daemon's waiting pool members: `vireo-vmm pool` processes working in `<state>/pool/`.
        static func members(_ daemon: DaemonProcess) -> Set<Int32> {
            let pool = daemon.stateDirectory + "/pool/"
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return Set(entries.compactMap { entry -> Int32? in
                guard let pid = Int32(entry),
                      let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                      let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd"),
                      cwd.hasPrefix(pool) else { return nil }
                let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                return arguments.count == 2 && arguments[0].hasSuffix("/vireo-vmm") && arguments[1] == "pool" ? pid : nil
            })
        }

        /// Whether process `pid` has a KVM VM open (a descriptor to `anon_inode:kvm-vm`).
        static func holdsKVMVM(_ pid: Int32) -> Bool { kvmDescriptors(pid).contains("anon_inode:kvm-vm") }

        /// What process `pid`'s descriptors to KVM objects are (`anon_inode:kvm-vm`, `anon_inode:kvm-vcpu:0`, …).
        static func kvmDescriptors(_ pid: Int32) -> [String] {
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            return descriptors.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)") }
                .filter { $0.hasPrefix("anon_inode:kvm") }
        }

        /// Process `pid`'s mappings: start address, size, permissions, file (empty: anonymous).
        static func mappings(_ pid: Int32) -> [(start: Int, size: Int, permissions: String, file: String)] {
            let maps = (try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? ""
            return maps.split(separator: "\n").compactMap { line in
                let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
                let bounds = fields.first?.split(separator: "-").compactMap { Int($0, radix: 16) } ?? []
                guard fields.count >= 5, bounds.count == 2 else { return nil }
                let file = fields.count == 6 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
                return (bounds[0], bounds[1] - bounds[0], String(fields[1]), file)
            }
        }

        /// Start addresses of process `pid`'s inaccessible private anonymous mappings of `size` bytes.
        static func reservedRanges(_ pid: Int32, size: Int) -> [Int] {
            mappings(pid).filter { $0.size == size && $0.permissions == "---p" && $0.file.isEmpty }.map(\.start)
        }

        /// The network devices process `pid` sees (/proc/PID/net/dev): its network namespace's.
        static func networkDevices(_ pid: Int32) -> [String] {
            let text = (try? String(contentsOfFile: "/proc/\(pid)/net/dev", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").dropFirst(2).compactMap { line in
                line.split(separator: ":").first.map { $0.trimmingCharacters(in: .whitespaces) }
            }.sorted()
        }

        /// Each thread's name with its seccomp mode and filter count (/proc/PID/task/TID/status), sorted.
        static func seccompByThread(_ pid: Int32) -> [String] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return tasks.compactMap { tid -> String? in
                guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8) else { return nil }
                var name = "", mode = "", filters = ""
                for line in text.split(separator: "\n") {
                    let fields = line.split(separator: "\t", maxSplits: 1).map(String.init)
                    guard fields.count == 2 else { continue }
                    switch fields[0] {
                    case "Name:": name = fields[1]
                    case "Seccomp:": mode = fields[1]
                    case "Seccomp_filters:": filters = fields[1]
                    default: break
                    }
                }
                return "\(name) \(mode)/\(filters)"
            }.sorted()
        }

        /// The nice values of process `pid`'s threads (/proc/PID/task/TID/stat, field 19).
        static func niceValues(_ pid: Int32) -> Set<Int> {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return Set(tasks.compactMap { tid -> Int? in
                guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                      let close = text.lastIndex(of: ")") else { return nil }
                let fields = text[text.index(after: close)...].split(separator: " ")
                return fields.count > 16 ? Int(fields[16]) : nil
            })
        }

        /// Whether `pid` is a live process (a zombie has no command line left).
        static func isRunning(_ pid: Int32) -> Bool {
            !(FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).isEmpty
        }

        /// Polls until the pool has `count` members; every sample must stay within `bound`.
        static func waitForMembers(_ daemon: DaemonProcess, count: Int, bound: Int, timeout: Double = 30) -> (Set<Int32>, Int) {
            let deadline = Date().addingTimeInterval(timeout)
            var most = 0
            var seen = members(daemon)
            while Date() < deadline {
                seen = members(daemon)
                most = max(most, seen.count)
                if seen.count == count { break }
                usleep(20_000)
            }
            return (seen, max(most, seen.count))
        }

        @Test func aRestoreThroughTheAPIRunsInAPooledVMMThatIsJailedAsAFreshOne() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess(extraArguments: ["--warm-pool", "2"])
            defer { daemon.stop() }
            let (ready, most) = WarmPool.waitForMembers(daemon, count: 2, bound: 2)
            #expect(ready.count == 2 && most <= 2, "pool members: \(ready), at most \(most)")
            // A waiting member runs no guest (no vCPU thread), but its VMM process, forked ahead as the
            // jail's supervisor would fork it, already holds the KVM VM (irqchip) and its vCPU 0: the
            // request only brings the snapshot.
            for pid in ready {
                #expect(HostProcess.vcpuThreads(of: pid).isEmpty)
                let deadline = Date().addingTimeInterval(20)  // counted as it starts; ready a moment later
                while Date() < deadline && !HostProcess.children(of: pid).contains(where: { WarmPool.holdsKVMVM($0) }) { usleep(20_000) }
                let children = HostProcess.children(of: pid)
                #expect(children.count == 1 && children.allSatisfy { HostProcess.vcpuThreads(of: $0).isEmpty },
                        "member \(pid): children \(children)")
                #expect(children.contains { WarmPool.holdsKVMVM($0) }, "member \(pid)'s VMM process holds no KVM VM")
                // …and its vCPU 0, whose CPUID and state come with the snapshot.
                #expect(children.contains { WarmPool.kvmDescriptors($0).filter { $0.hasPrefix("anon_inode:kvm-vcpu") } == ["anon_inode:kvm-vcpu:0"] },
                        "member \(pid)'s VMM process: \(children.map(WarmPool.kvmDescriptors))")
            }

            // A VM booted the usual way (a kernel: never from the pool), then its snapshot.
            try daemon.create("orig", kernel: counter, [("memoryMiB", .int(32))])
            #expect(try daemon.action("orig", "start").state == "running")
            #expect(!ready.contains(try daemon.vm("orig").pid ?? -1), "a boot took a pool member")
            #expect(daemon.waitForLog("orig", "count=3"), "orig: \(daemon.logs("orig").suffix(300))")
            let snapshot = daemon.directory + "/snap"
            let reply = try daemon.request("POST", "/vms/orig/snapshot", json: .object([("path", .string(snapshot))]))
            #expect(reply.status == 201, "\(reply.text)")
            let atSnapshot = Snapshots.counts(daemon.logs("orig")).last ?? 0

            // The restore: a pool member runs it and the guest continues its count. With resources, so
            // that it has cgroups, which its VMM (forked ahead) creates and its member removes.
            let resources = JSONValue.object([("cpuWeight", .int(300)), ("memoryMaxMiB", .int(128))])
            let created = try daemon.request("POST", "/vms", json: .object([("name", .string("clone")), ("restore", .string(snapshot)),
                                                                            ("resources", resources)]))
            #expect(created.status == 201, "\(created.text)")
            let clone = try daemon.action("clone", "start")
            #expect(clone.state == "running", "\(clone)")
            let watched = try #require(clone.pid)
            #expect(ready.contains(watched), "the clone's VMM \(watched) is not one of the pool's \(ready)")
            #expect(daemon.waitForLog("clone", "count=\(atSnapshot + 2)"), "clone: \(daemon.logs("clone").suffix(300))")
            let counts = Snapshots.counts(daemon.logs("clone"))
            #expect((counts.first ?? 0) >= atSnapshot - 1 && (counts.first ?? 0) > 1, "the clone starts over: \(counts.prefix(5))")
            let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(watched)/cwd")
            #expect(cwd == "\(daemon.stateDirectory)/vms/clone", "the pooled VMM works in its VM's directory: \(cwd ?? "?")")

            // Confined as the freshly started orig: jailed in its own namespaces, per-VM uid, no capabilities.
            let vmm = try #require(HostProcess.vmm(of: watched), "no VMM process under \(watched)")
            #expect(vmm != watched, "the jailed VMM is the pooled process's child (its supervisor's)")
            for kind in ["mnt", "net", "pid", "ipc", "uts"] {
                let theirs = Jail.namespace(kind, of: vmm), daemons = Jail.namespace(kind, of: daemon.pid)
                #expect(theirs != nil && theirs != daemons, "\(kind): the VMM's \(theirs ?? "?") vs the daemon's \(daemons ?? "?")")
            }
            #expect(Jail.root(of: vmm)?.hasHostFiles == false, "the host's /etc/passwd is visible to the pooled VMM")
            let credentials = try #require(ProcessCredentials(pid: vmm))
            #expect(credentials.uids.allSatisfy { $0 >= 0x7E56_0000 && $0 <= 0x7E56_FFFF }, "uids \(credentials.uids)")
            #expect(credentials.capabilities.values.allSatisfy { $0 == 0 } && credentials.noNewPrivileges, "\(credentials)")
            // Exactly as confined as the fresh orig (its VMM, too, is PID 1 of its namespace): the
            // namespaces and the seccomp programs the pooled VMM made ahead are its own and equal a
            // fresh VMM's; the kernel's view of its threads' filters, uid rules and capabilities match.
            let origSupervisor = try #require(try daemon.vm("orig").pid)
            let origVMM = try #require(HostProcess.vmm(of: origSupervisor))
            for kind in ["mnt", "net", "pid", "ipc", "uts"] {
                let theirs = Jail.namespace(kind, of: vmm)
                #expect(theirs != Jail.namespace(kind, of: origVMM) && theirs != Jail.namespace(kind, of: watched),
                        "\(kind): shared with the fresh VMM or with the pooled VMM's supervisor: \(theirs ?? "?")")
            }
            #expect(WarmPool.networkDevices(vmm) == ["lo"] && WarmPool.networkDevices(origVMM) == ["lo"],
                    "network devices: pooled \(WarmPool.networkDevices(vmm)), fresh \(WarmPool.networkDevices(origVMM))")
            // Threads of a VMM that just started may still be starting (and KVM adds its own worker).
            let threadsDeadline = Date().addingTimeInterval(10)
            while Date() < threadsDeadline && WarmPool.seccompByThread(vmm) != WarmPool.seccompByThread(origVMM) { usleep(20_000) }
            #expect(WarmPool.seccompByThread(vmm) == WarmPool.seccompByThread(origVMM) && !WarmPool.seccompByThread(vmm).isEmpty,
                    "seccomp (mode, filters) per thread: pooled \(WarmPool.seccompByThread(vmm)), fresh \(WarmPool.seccompByThread(origVMM))")
            // A VMM forked ahead waits at a better nice value; the VM runs at the daemon's, as a fresh one.
            #expect(WarmPool.niceValues(vmm) == WarmPool.niceValues(origVMM) && WarmPool.niceValues(watched) == WarmPool.niceValues(origSupervisor),
                    "nice: pooled \(WarmPool.niceValues(vmm)) (supervisor \(WarmPool.niceValues(watched))), fresh \(WarmPool.niceValues(origVMM)) (supervisor \(WarmPool.niceValues(origSupervisor)))")
            let origCredentials = try #require(ProcessCredentials(pid: origVMM))
            #expect(credentials.capabilities == origCredentials.capabilities && credentials.hasNoCapabilities,
                    "capabilities: pooled \(credentials.capabilities), fresh \(origCredentials.capabilities)")
            #expect(Set(credentials.uids).count == 1 && credentials.gids == credentials.uids && Set(origCredentials.uids).count == 1
                    && origCredentials.gids == origCredentials.uids, "pooled \(credentials), fresh \(origCredentials)")
            let origApplied = try #require(try daemon.vm("orig")["vmm"]?["isolation"])
            let cloneApplied = try #require(try daemon.vm("clone")["vmm"]?["isolation"])
            #expect(cloneApplied["seccomp_programs"] == origApplied["seccomp_programs"] && cloneApplied["seccomp_programs"]?["vCPU"] != nil,
                    "seccomp programs: pooled \(cloneApplied["seccomp_programs"] ?? .null), fresh \(origApplied["seccomp_programs"] ?? .null)")
            for key in ["seccomp", "capabilities", "no_new_privs", "supervised"] {
                #expect(cloneApplied[key] == origApplied[key], "\(key): clone \(cloneApplied) vs orig \(origApplied)")
            }
            #expect(cloneApplied["jail"]?.stringValue?.hasPrefix("/") == true && cloneApplied["uid"]?.intValue != origApplied["uid"]?.intValue,
                    "clone \(cloneApplied) vs orig \(origApplied)")
            // Its cgroups (named after its supervisor, the member) hold it and apply the limits; they and
            // the jail directory exist on the host while it runs and are removed when it ends.
            let jailRoot = "/run/vireo/jail/vm-\(watched)"
            let cgroupPaths = (cloneApplied["cgroups"]?.arrayValue ?? []).compactMap { $0["path"]?.stringValue }
            #expect(cloneApplied["jail"]?.stringValue == jailRoot && FileManager.default.fileExists(atPath: jailRoot), "\(cloneApplied)")
            #expect(!cgroupPaths.isEmpty && cgroupPaths.allSatisfy { $0.hasSuffix("/vireo/vm-\(watched)") && FileManager.default.fileExists(atPath: $0) },
                    "cgroups \(cgroupPaths)")
            let procs = cgroupPaths.map { (try? String(contentsOfFile: $0 + "/cgroup.procs", encoding: .utf8)) ?? "" }
            #expect(procs.allSatisfy { $0.split(separator: "\n").contains(Substring(String(vmm))) }, "VMM \(vmm) not in its cgroups: \(procs)")
            #expect(cloneApplied["cpu_weight"]?.intValue == 300 && cloneApplied["memory_max"]?.intValue == 128 << 20, "\(cloneApplied)")

            // The pool refills to two new members, never more.
            let (refilled, refillMost) = WarmPool.waitForMembers(daemon, count: 2, bound: 2)
            #expect(refilled.count == 2 && refillMost <= 2, "after the restore: \(refilled), at most \(refillMost)")
            #expect(!refilled.contains(watched))
            // Members started after a 32 MiB restore register that much guest RAM ahead: their VMM
            // process holds a 32 MiB reserved (inaccessible) range, where the next snapshot's memory goes.
            let startedAfter = refilled.subtracting(ready)
            #expect(!startedAfter.isEmpty, "no member started after the restore: \(refilled) vs \(ready)")
            for pid in startedAfter {
                let deadline = Date().addingTimeInterval(20)
                while Date() < deadline && !HostProcess.children(of: pid).contains(where: { !WarmPool.reservedRanges($0, size: 32 << 20).isEmpty }) {
                    usleep(20_000)
                }
                #expect(HostProcess.children(of: pid).contains { !WarmPool.reservedRanges($0, size: 32 << 20).isEmpty },
                        "member \(pid): no 32 MiB range reserved ahead")
            }

            // The exit of a pooled VMM is recorded like any other; a restart takes a member again.
            #expect(try daemon.action("clone", "stop").state == "stopped")
            let cleanDeadline = Date().addingTimeInterval(5)
            let leftovers = { ([jailRoot] + cgroupPaths).filter { FileManager.default.fileExists(atPath: $0) } }
            while Date() < cleanDeadline && !leftovers().isEmpty { usleep(20_000) }
            #expect(leftovers().isEmpty, "left after the pooled VM ended: \(leftovers())")
            let first = try daemon.action("clone", "start")
            #expect(refilled.contains(first.pid ?? -1), "the restart's VMM \(first.pid ?? -1) is not one of \(refilled)")
            #expect(daemon.waitForLog("clone", "count=\(atSnapshot + 2)"))
            // Once more: the oldest member now waiting started after a restore, so the snapshot's memory
            // is mapped over the range it registered ahead; the guest continues all the same.
            #expect(try daemon.action("clone", "stop").state == "stopped")
            let linesBefore = Snapshots.counts(daemon.logs("clone")).count  // the console log is appended to
            let reservedAt = startedAfter.flatMap { HostProcess.children(of: $0) }.flatMap { WarmPool.reservedRanges($0, size: 32 << 20) }
            let again = try daemon.action("clone", "start")
            #expect(startedAfter.contains(again.pid ?? -1), "the VMM \(again.pid ?? -1) is not one of \(startedAfter)")
            let guestRAM = HostProcess.vmm(of: again.pid ?? -1).map { WarmPool.mappings($0) }?.filter { $0.file.hasSuffix("/memory.bin") } ?? []
            #expect(guestRAM.count == 1 && reservedAt.contains(guestRAM[0].start) && guestRAM[0].size == 32 << 20,
                    "the snapshot's memory \(guestRAM.map { String($0.start, radix: 16) }) is not where the member reserved it \(reservedAt.map { String($0, radix: 16) })")
            let countDeadline = Date().addingTimeInterval(30)
            while Date() < countDeadline && Snapshots.counts(daemon.logs("clone")).count < linesBefore + 2 { usleep(50_000) }
            let continued = Snapshots.counts(daemon.logs("clone")).dropFirst(linesBefore)
            #expect(continued.count >= 2 && (continued.first ?? 0) >= atSnapshot - 1 && (continued.first ?? 0) > 1,
                    "the clone does not continue from the snapshot: \(Array(continued.prefix(5))), snapshot at \(atSnapshot)")

            // A daemon crash: its members end with it (their sockets close); the pooled VM runs on,
            // is re-adopted, and its end is still recorded (the shim writes it in the VM's directory).
            let beforeCrash = WarmPool.members(daemon)
            try daemon.crashAndRestart()
            #expect(daemon.waitForVM("clone") { $0.state == "running" }?.pid == again.pid, "the pooled VM was not re-adopted")
            let (afterCrash, crashMost) = WarmPool.waitForMembers(daemon, count: 2, bound: 2)
            #expect(afterCrash.count == 2 && crashMost <= 2 && afterCrash.isDisjoint(with: beforeCrash),
                    "members before the crash \(beforeCrash), after \(afterCrash)")
            for pid in beforeCrash { #expect(!WarmPool.isRunning(pid), "member \(pid) outlived its daemon") }
            try daemon.action("clone", "kill")
            let killed = daemon.waitForVM("clone") { $0.state == "stopped" }
            #expect(killed?.state == "stopped", "\(String(describing: killed))")

            // A snapshot file swapped for a link after the VM was defined: refused with one line, the
            // link never followed (the daemon opens the files for the member), the daemon answers.
            let secret = daemon.directory + "/secret"
            try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: secret))
            try FileManager.default.moveItem(atPath: snapshot + "/memory.bin", toPath: daemon.directory + "/memory.bin.real")
            try FileManager.default.createSymbolicLink(atPath: snapshot + "/memory.bin", withDestinationPath: secret)
            let refused = try daemon.request("POST", "/vms/clone/start")
            #expect((400..<500).contains(refused.status) && refused.errorMessage.contains("memory.bin"), "\(refused.status) \(refused.text)")
            #expect(try daemon.vm("clone").state != "running")
            #expect(try daemon.request("GET", "/info").status == 200)

            // Drained with the daemon: its members end, the VMs keep running.
            let last = WarmPool.waitForMembers(daemon, count: 2, bound: 2).0
            kill(daemon.pid, SIGTERM)
            _ = daemon.process.waitForExit(timeout: 20)
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline && !WarmPool.members(daemon).isEmpty { usleep(20_000) }
            #expect(WarmPool.members(daemon).isEmpty, "pool members left after the daemon: \(WarmPool.members(daemon))")
            for pid in last { #expect(!WarmPool.isRunning(pid), "member \(pid) still runs") }
            let origPID = try #require(try? String(contentsOfFile: "\(daemon.stateDirectory)/vms/orig/vmm.pid", encoding: .utf8))
            #expect(kill(Int32(origPID.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1, 0) == 0, "orig stopped with the daemon")
        }

        @Test func aBadPoolSizeIsOneLine() throws {
            let serve = try GuestProcess(arguments: ["serve", "--warm-pool", "65", "--socket", "/tmp/vireo-pool-bad.sock"])
            let status = serve.waitForExit(timeout: 30)
            #expect(status == 2 && serve.errorOutput.contains("--warm-pool must be between 0 and 64; got 65"), "\(serve.errorOutput)")
        }
    }
}
