import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12, finding 1: the VM's user (a guest that escaped into its VMM) owns `vmm/` and plants
    /// links there, or left them in the VM directory under an older layout. The daemon (root)
    /// never follows them: victims stay byte-identical and keep their owner, a planted control
    /// socket cannot steer requests to another VM, and log reads never read a linked file.
    @Suite struct PlantedLinks {
        private struct Victim {
            let path: String
            let bytes: Data
            init(_ path: String, _ text: String) throws {
                self.path = path
                bytes = Data(text.utf8)
                try bytes.write(to: URL(fileURLWithPath: path))
                chmod(path, 0o600)
            }
            func expectIntact(sourceLocation: SourceLocation = #_sourceLocation) {
                var info = stat()
                #expect(lstat(path, &info) == 0 && info.st_uid == 0 && info.st_mode & S_IFMT == S_IFREG, "\(path)", sourceLocation: sourceLocation)
                #expect((try? Data(contentsOf: URL(fileURLWithPath: path))) == bytes, "\(path) changed", sourceLocation: sourceLocation)
            }
        }

        @Test func plantedLinksAreNeverFollowed() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            _ = try #require(getpwnam("nobody"), "no 'nobody' user on this host")
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            for name in ["va", "vb"] {
                let (status, _, err) = try daemon.cli(["create", name, "--kernel", counter, "--memory", "32M", "--uid", "nobody"])
                #expect(status == 0, "create \(name): \(err)")
            }
            #expect(try daemon.action("vb", "start").state == "running")
            let vms = daemon.stateDirectory + "/vms"
            let victims = daemon.directory + "/victims"
            try FileManager.default.createDirectory(atPath: victims, withIntermediateDirectories: true)
            let targets = try ["console", "rotated", "vmmlog", "pidtmp", "legacy"].map { try Victim("\(victims)/\($0)", "root's \($0) file\n") }

            // Links left in va's directory (older layout: it belonged to the VM's user) and in vmm/.
            let va = vms + "/va"
            try FileManager.default.createDirectory(atPath: va + "/vmm", withIntermediateDirectories: true)
            symlink(targets[2].path, va + "/vmm.log")
            symlink(targets[3].path, va + "/vmm.pid.tmp")
            symlink(targets[4].path, va + "/console.log")
            symlink(vms + "/vb/vmm/api.sock", va + "/api.sock")
            symlink(targets[0].path, va + "/vmm/console.log")
            symlink(targets[1].path, va + "/vmm/console.log.1")
            #expect(try daemon.action("va", "start").state == "running")
            #expect(daemon.waitForLog("va", "count=2"), "va console: \(daemon.logs("va"))")
            for victim in targets { victim.expectIntact() }
            var info = stat()
            #expect(lstat(va, &info) == 0 && info.st_uid == 0 && info.st_mode & 0o022 == 0, "the VM directory is root's alone")
            #expect(lstat(va + "/vmm", &info) == 0 && info.st_uid == getpwnam("nobody")!.pointee.pw_uid)

            // While both run, va's user swaps its control socket for a link to vb's.
            unlink(va + "/vmm/api.sock")
            symlink(vms + "/vb/vmm/api.sock", va + "/vmm/api.sock")
            let pause = try daemon.request("POST", "/vms/va/pause")
            #expect(pause.status != 200, "pause went somewhere: \(pause.text)")
            let vbStatus = try daemon.vm("vb")
            #expect(vbStatus.state == "running" && vbStatus["vmm"]?["state"]?.stringValue == "running", "vb: \(vbStatus)")

            // And its console log for a link to a root-only secret: log reads never follow it.
            let secret = try Victim("\(victims)/secret", "TOP-SECRET-\(getpid())\n")
            unlink(va + "/vmm/console.log")
            symlink(secret.path, va + "/vmm/console.log")
            #expect(!daemon.logs("va").contains("TOP-SECRET"), "the daemon read a linked file")
            secret.expectIntact()
            #expect(try daemon.request("GET", "/info").status == 200)
        }
    }
}
