import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12: daemon VMs are jailed by default (mount, PID, IPC, UTS and network namespaces;
    /// pivot_root into a per-VM tmpfs) where the host can; `isolation.jail: false` opts out; a jailed
    /// VM's snapshot (written inside the jail, moved out by the daemon) restores into a jailed clone.
    /// `DaemonTests/Linux` shows a jailed VM's `--net user` network (DHCP through passt).
    @Suite(.enabled { try TestEnvironment.available("DaemonTests.Jail", .root) })
    struct Jail {
        /// The namespace a process is in (`mnt:[4026531841]`).
        static func namespace(_ kind: String, of pid: Int32) -> String? {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(kind)")
        }

        /// What the process sees as `/`: its device and inode, and whether the host's /etc is there.
        static func root(of pid: Int32) -> (device: UInt64, inode: UInt64, hasHostFiles: Bool)? {
            var info = stat()
            guard stat("/proc/\(pid)/root/", &info) == 0 else { return nil }
            return (UInt64(info.st_dev), UInt64(info.st_ino), access("/proc/\(pid)/root/etc/passwd", F_OK) == 0)
        }

        @Test func defaultVMsAreJailedTheOptOutIsNotAndAJailedSnapshotRestores() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("jailed", kernel: counter, [("memoryMiB", .int(32))])
            try daemon.create("open", kernel: counter, [("memoryMiB", .int(32)), ("isolation", .object([("jail", .bool(false))]))])
            for name in ["jailed", "open"] {
                #expect(try daemon.action(name, "start").state == "running")
                #expect(daemon.waitForLog(name, "count=2"), "\(name): \(daemon.logs(name).suffix(300))")
            }
            let ours = try #require(Jail.root(of: getpid()))
            // The test runs in the daemon's namespaces: the daemon is its child, nothing unshared.
            #expect(Jail.namespace("mnt", of: daemon.pid) == Jail.namespace("mnt", of: getpid()))

            let jailedVM = try daemon.vm("jailed")
            #expect(jailedVM["isolation"]?["jail"] == .null, "no choice stored: the daemon's default")
            let jailed = try #require(HostProcess.vmm(of: jailedVM.pid ?? -1), "no VMM process")
            for kind in ["mnt", "net", "pid", "ipc", "uts"] {
                let theirs = Jail.namespace(kind, of: jailed), daemons = Jail.namespace(kind, of: daemon.pid)
                #expect(theirs != nil && theirs != daemons, "\(kind): the VMM's \(theirs ?? "?") vs the daemon's \(daemons ?? "?")")
            }
            let jailedRoot = try #require(Jail.root(of: jailed))
            #expect(jailedRoot.device != ours.device || jailedRoot.inode != ours.inode, "the VMM's / is the host's /")
            #expect(!jailedRoot.hasHostFiles, "the host's /etc/passwd is visible in the jail")
            let applied = try #require(jailedVM["vmm"]?["isolation"], "inspect: \(jailedVM)")
            #expect(applied["jail"]?.stringValue?.hasPrefix("/") == true, "\(applied)")
            #expect(applied["capabilities"]?.stringValue == "none" && applied["uid"]?.intValue != 0, "\(applied)")

            let openVM = try daemon.vm("open")
            #expect(openVM["isolation"]?["jail"]?.boolValue == false)
            let open = try #require(HostProcess.vmm(of: openVM.pid ?? -1))
            #expect(Jail.namespace("mnt", of: open) == Jail.namespace("mnt", of: daemon.pid))
            #expect(Jail.namespace("net", of: open) == Jail.namespace("net", of: daemon.pid))
            #expect(Jail.root(of: open)?.hasHostFiles == true)
            #expect(openVM["vmm"]?["isolation"]?["jail"] == .null, "\(openVM)")
            // Opting out of the jail keeps the per-VM uid.
            #expect((ProcessCredentials(pid: open)?.uids.first ?? 0) != 0)

            // A snapshot of the jailed VM: the VMM writes it inside its jail, the daemon moves it out for root.
            let snapshot = daemon.directory + "/snap-jailed"
            let reply = try daemon.request("POST", "/vms/jailed/snapshot", json: .object([("path", .string(snapshot))]))
            #expect(reply.status == 201, "\(reply.text)")
            let atSnapshot = Snapshots.counts(daemon.logs("jailed")).last ?? 0
            let files = (try? FileManager.default.contentsOfDirectory(atPath: snapshot)) ?? []
            #expect(files.contains("state.bin"), "snapshot files: \(files)")
            var info = stat()
            #expect(lstat(snapshot, &info) == 0 && info.st_uid == 0, "the snapshot directory is root's")
            for file in files { #expect(lstat(snapshot + "/" + file, &info) == 0 && info.st_uid == 0, "\(file) is uid \(info.st_uid)") }
            let staged = (try? FileManager.default.contentsOfDirectory(atPath: "\(daemon.stateDirectory)/vms/jailed/vmm")) ?? []
            #expect(!staged.contains { $0.hasPrefix(".snapshot-") }, "staging left behind: \(staged)")
            #expect(try daemon.vm("jailed").state == "running")

            // The opted-out VM snapshots the same way (its VMM writes in its own `vmm/` too).
            let openSnapshot = daemon.directory + "/snap-open"
            let openReply = try daemon.request("POST", "/vms/open/snapshot", json: .object([("path", .string(openSnapshot))]))
            #expect(openReply.status == 201, "\(openReply.text)")
            #expect(lstat(openSnapshot + "/state.bin", &info) == 0 && info.st_uid == 0)

            // Restored as a jailed clone that continues the count.
            let created = try daemon.request("POST", "/vms", json: .object([("name", .string("clone")), ("restore", .string(snapshot))]))
            #expect(created.status == 201, "\(created.text)")
            let clone = try daemon.action("clone", "start")
            #expect(clone.state == "running")
            #expect(daemon.waitForLog("clone", "count=\(atSnapshot + 2)"), "clone: \(daemon.logs("clone"))")
            let counts = Snapshots.counts(daemon.logs("clone"))
            #expect((counts.first ?? 0) >= atSnapshot - 1 && (counts.first ?? 0) > 1, "the clone starts over: \(counts.prefix(5))")
            let cloneVMM = try #require(HostProcess.vmm(of: clone.pid ?? -1))
            #expect(Jail.namespace("mnt", of: cloneVMM) != Jail.namespace("mnt", of: daemon.pid))
            #expect(Jail.root(of: cloneVMM)?.hasHostFiles == false)
            for name in ["jailed", "open", "clone"] { #expect(try daemon.action(name, "stop").state == "stopped") }
        }
    }
}
