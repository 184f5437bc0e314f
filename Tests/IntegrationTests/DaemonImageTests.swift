import Foundation
import Manager
import Testing

extension DaemonTests {
    /// An OCI image run as a daemon VM (`vireo create NAME --image REF -- CMD…`): one boot.
    @Suite(.enabled { try TestEnvironment.available("DaemonTests.Image", .kernel, .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs")) })
    struct Image {
        @Test func imageVMRunsItsProgramAndRecordsTheExitStatus() throws {
            _ = try TestImages.initramfs()  // the daemon takes the newest cached one (no 'initrd' given)
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let image = daemon.directory + "/image"
            try TestImages.oneLayer(at: image)

            /// `vireo images rm` on the daemon's cache (a local command: no --socket).
            func removeImage() throws -> (Int32?, String, String) {
                let process = try GuestProcess(arguments: ["images", "rm", "--state-dir", daemon.stateDirectory, image])
                process.closeInput()
                let status = process.waitForExit(timeout: 60)
                return (status, process.output, process.errorOutput)
            }

            // Refusals name their field, and define nothing.
            func refusal(_ fields: [(key: String, value: JSONValue)]) throws -> (Int, String?) {
                let reply = try daemon.request("POST", "/vms", json: .object([("name", .string("bad"))] + fields))
                return (reply.status, reply.json?["error"]?["field"]?.stringValue)
            }
            let imageSection = JSONValue.object([("reference", .string(image))])
            var (status, field) = try refusal([("image", .object([("reference", .string(daemon.directory + "/no-such-image"))]))])
            #expect(status == 422 && field == "image.reference", "missing image: \(status) \(field ?? "-")")
            (status, field) = try refusal([("image", imageSection), ("restore", .string(daemon.directory))])
            #expect(status == 422 && field == "restore", "image and restore: \(status) \(field ?? "-")")
            (status, field) = try refusal([("image", .object([("command", .array([.string("true")]))]))])
            #expect(status == 422 && field == "image.reference", "no reference: \(status) \(field ?? "-")")
            (status, field) = try refusal([("image", .object([("reference", .string(image)), ("workdir", .string("tmp"))]))])
            #expect(status == 422 && field == "image.workdir", "relative workdir: \(status) \(field ?? "-")")
            #expect(try daemon.list().isEmpty)

            // The CLI: no kernel given, so the daemon's VIREO_KERNEL and image initramfs.
            // (Not daemon.cli: it appends --socket, which after `--` would be part of the command.)
            let create = try GuestProcess(arguments: ["create", "job", "--memory", "256M", "--env", "WHO=daemon", "--image", image,
                                                      "--socket", daemon.socket,
                                                      "--", "sh", "-c", "echo image-line who=$WHO greeting=$GREETING; sleep 5; exit 7"])
            create.closeInput()
            var code = create.waitForExit(timeout: 120)
            var (out, err) = (create.output, create.errorOutput)
            #expect(code == 0, "create: \(out) \(err)")
            let defined = try daemon.vm("job")
            #expect(defined["image"]?["reference"]?.stringValue == image, "\(defined.serialized())")
            #expect(defined["image"]?["command"]?.arrayValue?.count == 3)

            let started = Date()
            let running = try daemon.action("job", "start")
            #expect(running.state == "running")
            // Like any daemon VM: a per-VM uid without capabilities, jailed where the host can.
            let vmmPID = try #require(HostProcess.vmm(of: running.pid ?? -1), "no VMM process")
            let credentials = try #require(ProcessCredentials(pid: vmmPID))
            #expect(credentials.uids.allSatisfy { $0 != 0 } && credentials.hasNoCapabilities, "VMM uids: \(credentials.uids)")
            if JailSupport.unavailableReason == nil {
                #expect(Jail.namespace("mnt", of: vmmPID) != Jail.namespace("mnt", of: daemon.pid), "the VMM is not jailed")
            }
            let printed = daemon.waitForLog("job", "image-line who=daemon greeting=hello", timeout: 400)
            TestEnvironment.log("daemon image VM: program output after \(Int(Date().timeIntervalSince(started))) s on \(TestEnvironment.host)")
            #expect(printed, "console tail: \(daemon.logs("job").suffix(2000))")
            // While it runs, its base is locked: the cache refuses to remove the image.
            (code, _, err) = try removeImage()
            #expect(code == 2 && err.contains("in use"), "rm while running: \(code ?? -1) \(err)")

            // The program's exit powers the VM off; the daemon records the program's status.
            let ended = daemon.waitForVM("job", timeout: 120) { $0.state != "running" }
            #expect(ended?.state == "stopped", "\(ended?.serialized() ?? "-")")
            #expect(ended?["lastExit"]?["status"]?.intValue == 7, "\(ended?["lastExit"]?.serialized() ?? "-")")
            #expect(ended?["lastExit"]?["reason"]?.stringValue?.contains("program exited with status 7") == true)
            (code, out, _) = try daemon.cli(["ls"])
            let row = out.split(separator: "\n").first { $0.hasPrefix("job ") }
            #expect(code == 0 && row?.split(separator: " ").last == "7", "ls: \(out)")
            // The VM's overlay is its own, in the daemon's image cache; with the VM ended the image is free.
            #expect(FileManager.default.fileExists(atPath: daemon.stateDirectory + "/images/runs/vm-job/root.overlay"))
            (code, out, err) = try removeImage()
            #expect(code == 0, "rm after the run: \(out) \(err)")
            // Deleting the VM removes its disks.
            _ = try daemon.request("DELETE", "/vms/job")
            #expect(!FileManager.default.fileExists(atPath: daemon.stateDirectory + "/images/runs/vm-job"))
        }
    }
}
