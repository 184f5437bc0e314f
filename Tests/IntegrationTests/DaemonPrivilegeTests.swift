import Foundation
import Manager
import Testing
import VMM

/// What /proc/PID/status says about a process's identity and capabilities.
struct ProcessCredentials {
    let uids: [UInt32]
    let gids: [UInt32]
    let capabilities: [String: UInt64]
    let noNewPrivileges: Bool

    init?(pid: Int32) {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var uids: [UInt32] = [], gids: [UInt32] = [], capabilities: [String: UInt64] = [:], noNewPrivileges = false
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard let key = fields.first else { continue }
            let values = fields.dropFirst()
            switch key {
            case "Uid:": uids = values.compactMap { UInt32($0) }
            case "Gid:": gids = values.compactMap { UInt32($0) }
            case "NoNewPrivs:": noNewPrivileges = values.first == "1"
            case _ where key.hasPrefix("Cap"): capabilities[String(key.dropLast())] = values.first.flatMap { UInt64($0, radix: 16) }
            default: break
            }
        }
        self.uids = uids
        self.gids = gids
        self.capabilities = capabilities
        self.noNewPrivileges = noNewPrivileges
    }

    /// Every capability set (inheritable, permitted, effective, bounding, ambient) is empty.
    var hasNoCapabilities: Bool {
        ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].allSatisfy { capabilities[$0] == 0 }
    }
}

extension DaemonTests {
    /// Issue 12, finding 4: a daemon VM without `isolation.user` runs its VMM as a uid of its own
    /// from the reserved range with no capabilities; `isolation.user: "root"` opts out; a snapshot
    /// of such a VM is written by the VMM and then given back to root.
    @Suite struct LeastPrivilege {
        @Test func daemonVMsRunAsTheirOwnUnprivilegedUID() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("a", kernel: counter, [("memoryMiB", .int(32))])
            try daemon.create("b", kernel: counter, [("memoryMiB", .int(32))])
            try daemon.create("r", kernel: counter, [("memoryMiB", .int(32)), ("isolation", .object([("user", .string("root"))]))])
            var uids: [String: UInt32] = [:]
            for name in ["a", "b", "r"] {
                let vm = try daemon.action(name, "start")
                #expect(daemon.waitForLog(name, "count=1"), "\(name): \(daemon.logs(name).suffix(300))")
                // Jailed by default: the published pid is the VMM's root supervisor, the VMM its child.
                let pid = try #require(HostProcess.vmm(of: vm.pid ?? -1), "no VMM process for \(name)")
                let credentials = try #require(ProcessCredentials(pid: pid))
                uids[name] = credentials.uids.first
                if name == "r" {
                    #expect(credentials.uids == [0, 0, 0, 0], "an explicit root user keeps root: \(credentials.uids)")
                    continue
                }
                let uid = try #require(credentials.uids.first)
                #expect(credentials.uids == [uid, uid, uid, uid] && UserIdentity.perVMRange.contains(uid), "\(name): uids \(credentials.uids)")
                #expect(credentials.gids == [uid, uid, uid, uid], "\(name): gids \(credentials.gids)")
                #expect(credentials.hasNoCapabilities, "\(name): \(credentials.capabilities)")
                #expect(credentials.noNewPrivileges)
                #expect(vm["isolation"]?["user"]?.stringValue == nil, "the stored definition is unchanged: \(vm)")
                // The VMM's own files are its uid's; the daemon's records stay root's.
                var info = stat()
                #expect(lstat("\(daemon.stateDirectory)/vms/\(name)/vmm", &info) == 0 && info.st_uid == uid)
                #expect(lstat("\(daemon.stateDirectory)/vms/\(name)/vmm.log", &info) == 0 && info.st_uid == 0)
            }
            #expect(uids["a"] != uids["b"], "two VMs share a uid: \(uids)")

            // A snapshot: the VMM (uid a) writes into a root-owned parent; root owns the result.
            let target = daemon.directory + "/snap-a"
            let reply = try daemon.request("POST", "/vms/a/snapshot", json: .object([("path", .string(target))]))
            #expect(reply.status == 201, "\(reply.text)")
            let files = (try? FileManager.default.contentsOfDirectory(atPath: target)) ?? []
            #expect(!files.isEmpty)
            var info = stat()
            #expect(lstat(target, &info) == 0 && info.st_uid == 0, "the snapshot directory was given back to root")
            for file in files {
                #expect(lstat(target + "/" + file, &info) == 0 && info.st_uid == 0, "\(file) is uid \(info.st_uid)")
            }

            // A restart keeps the VM's uid while it is free. `kill` returns once the VMM is gone; the
            // rest of its process tree (the jail's supervisor, which may also run as the VM's uid)
            // can take a moment longer under load, and while it lives the uid is not free.
            _ = try daemon.action("a", "kill")
            let uidA = try #require(uids["a"])
            let deadline = Date().addingTimeInterval(10)
            while !livePIDs(runningAs: uidA).isEmpty, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            #expect(livePIDs(runningAs: uidA).isEmpty, "the killed VM's processes are still there")
            let again = try daemon.action("a", "start")
            let againPID = try #require(HostProcess.vmm(of: again.pid ?? -1))
            #expect(ProcessCredentials(pid: againPID)?.uids.first == uids["a"])
        }
    }
}

/// Processes (not zombies) whose real uid is `uid`, from /proc/PID/status.
private func livePIDs(runningAs uid: UInt32) -> [Int32] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return names.compactMap { name -> Int32? in
        guard let pid = Int32(name),
              let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var realUID: UInt32?, exited = false
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if fields.first == "Uid:", fields.count > 1 { realUID = UInt32(fields[1]) }
            if fields.first == "State:", fields.count > 1 { exited = fields[1] == "Z" || fields[1] == "X" }
        }
        return realUID == uid && !exited ? pid : nil
    }
}
