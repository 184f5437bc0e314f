import Foundation
import Images
import Testing

/// A pod in one microVM (issue 15): containers whose OCI spec carries CRI's annotations
/// (`io.kubernetes.cri.container-type`, `io.kubernetes.cri.sandbox-id`, set here with `ctr run
/// --annotation` as CRI sets them) go to their sandbox's shim, which runs them as processes in the
/// sandbox's VM, each rooted in its own image's disk, hot attached to the running VM.
extension ContainerdShimTests {
    static let sandboxType = "io.kubernetes.cri.container-type=sandbox"
    static let containerType = "io.kubernetes.cri.container-type=container"

    /// A busybox image with /etc/pod-image holding `name` (and /etc/only-NAME), as an importable archive.
    private func podImage(_ name: String, in directory: String) throws -> (reference: String, archive: String) {
        let layout = "\(directory)/image-\(name)"
        let reference = "docker.io/vireo-test/pod-\(name):latest"
        let layer = try TestImages.layer { tar in
            try TestImages.busyboxLayer(&tar)
            tar.add(TestImages.file("etc/pod-image"), data: Array("\(name)\n".utf8))
            tar.add(TestImages.file("etc/only-\(name)"), data: Array("\(name)\n".utf8))
            tar.add(TarEntry(path: "bin/mount", kind: .symlink, mode: 0o777, linkTarget: "busybox"))
        }
        var writer = LayoutWriter(configuration: .init(Env: ["PATH=/bin", "IMAGE=\(name)"], Cmd: ["/bin/sh"]))
        writer.gzip = true
        try writer.write(layers: [layer], to: layout)
        let indexPath = layout + "/index.json"
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var manifests = index["manifests"] as! [[String: Any]]
        manifests[0]["annotations"] = ["io.containerd.image.name": reference, "org.opencontainers.image.ref.name": "latest"]
        index["manifests"] = manifests
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        let archive = "\(directory)/image-\(name).tar"
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["-C", layout, "-cf", archive, "."]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else { throw ImageError("tar of the test image \(name) failed") }
        return (reference, archive)
    }

    /// Command lines of the processes naming `directory` that contain `text`.
    private func commandLines(_ directory: String, containing text: String) -> [String] {
        ContainerdDaemon.processes(mentioning: directory, except: nil).compactMap { pid in
            let line = String(decoding: (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return line.contains(text) ? line : nil
        }
    }

    @Test func aPodsContainersRunInTheSandboxesVMEachInItsOwnImage() throws {
        let directory = try TestEnvironment.freshDirectory("vireo-ctrd-pod").path
        let sandboxArchive = try imageArchive(in: directory)
        let alpha = try podImage("alpha", in: directory)
        let beta = try podImage("beta", in: directory)
        let daemon = try ContainerdDaemon(directory: directory, environment: try environment(directory))
        defer {
            daemon.stop()
            for pid in ContainerdDaemon.processes(mentioning: directory, except: nil) { kill(pid, SIGKILL) }
            for mount in ContainerdDaemon.mounts(under: directory).reversed() { umount2(mount, Int32(MNT_DETACH)) }
            try? FileManager.default.removeItem(atPath: directory)
        }
        for archive in [sandboxArchive, alpha.archive, beta.archive] {
            let imported = try daemon.ctr(["image", "import", archive])
            try #require(imported.status == 0, "ctr image import \(archive): \(imported.output) \(imported.errors)")
        }
        let runtime = ContainerdShimTests.runtime
        let member = ["--annotation", ContainerdShimTests.containerType, "--annotation", "io.kubernetes.cri.sandbox-id=pod"]

        // The sandbox (CRI's pause container): its VM is the pod's (the first start boots the guest
        // once for the pod shape's warm-start snapshot).
        let sandboxLog = directory + "/sandbox.log"
        let sandbox = try daemon.ctr(["run", "-d", "--log-uri", "file://" + sandboxLog, "--runtime", runtime, "--annotation", ContainerdShimTests.sandboxType,
                                      ContainerdShimTests.reference, "pod", "sh", "-c", "echo sandbox-ready; sleep 600"], timeout: 900)
        try #require(sandbox.status == 0, "ctr run -d (sandbox): \(sandbox.status) \(sandbox.errors); \(daemon.logTail)")
        try #require(eventually(600) { ((try? String(contentsOfFile: sandboxLog, encoding: .utf8)) ?? "").contains("sandbox-ready") },
                     "the sandbox did not start: \(daemon.logTail)")

        // The pod VM's control socket refuses hot attaches it cannot honour, with one line each: no
        // descriptors passed, a disk that is not an empty slot, a slot that does not exist.
        let controlDirectories = ((try? FileManager.default.contentsOfDirectory(atPath: directory + "/vireo-shim")) ?? []).filter { $0.hasSuffix(".vmm") }
        try #require(controlDirectories.count == 1, "the pod VM's control socket directory: \(controlDirectories)")
        let control = "\(directory)/vireo-shim/\(controlDirectories[0])/api.sock"
        for (request, expected) in [("attach-disk vireo-slot-5", "takes 1 descriptor"), ("attach-disk vireo-root", "is not empty"),
                                    ("attach-disk vireo-slot-9", "no disk with id=vireo-slot-9"), ("detach-disk vireo-slot-0", "holds no disk")] {
            guard let fd = RawShimSocket.connect(control) else { Issue.record("cannot connect to \(control)"); break }
            _ = write(fd, request + "\n", request.utf8.count + 1)
            var line: [UInt8] = []
            while line.count < 4096, let byte = RawShimSocket.read(fd, 1).first, byte != 10 { line.append(byte) }
            let reply = String(decoding: line, as: UTF8.self)
            close(fd)
            #expect(reply.contains("\"ok\":false") && reply.contains(expected), "\(request): \(reply)")
        }

        // A container of the pod, foreground: its own image's files (not the other's), its output and
        // exit status through ctr. Its time is the cost of adding a container to a running pod.
        let first = try daemon.ctr(["run", "--rm", "--runtime", runtime] + member + [alpha.reference, "pod-alpha", "sh", "-c",
                                    "cat /etc/pod-image; test -e /etc/only-beta || echo no-beta; echo $IMAGE; exit 5"], timeout: 600)
        #expect(first.status == 5 && first.output == "alpha\nno-beta\nalpha\n",
                "pod container alpha: status \(first.status), stdout \(first.output.debugDescription), stderr \(first.errors); \(daemon.logTail)")
        TestEnvironment.log("containerd: ctr run of a container in a running pod, to its exit \(String(format: "%.1f", first.seconds)) s")
        // The shim's own account of that time (rootfs, base, attach, the process in the guest).
        let shimLines = ((try? String(contentsOfFile: daemon.log, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains("vireo shim: pod container") }
        for line in shimLines { TestEnvironment.log("containerd: \(line.suffix(200))") }

        // A pod container with a terminal (`ctr run -t`, as `kubectl run -it` asks CRI for one): a pty
        // of the pod VM's devpts, ctr's size, a resize (ResizePty), typed input, its exit status.
        let script = #"[ -t 0 ] && echo is-a-tty; while read line; do [ "$line" = end ] && exit 6; echo "got-$line $(stty size)"; done"#
        let session = try TerminalSession(["/usr/bin/ctr", "--address", daemon.socket, "run", "-t", "--rm", "--runtime", runtime] + member
                                          + [alpha.reference, "pod-tty", "sh", "-c", script], environment: daemon.environment, rows: 27, columns: 95)
        #expect(session.waitFor(300) { $0.contains("is-a-tty") }, "pod container with -t: no terminal: \(session.text.debugDescription); \(daemon.logTail)")
        #expect(session.typeUntil("27 95", "first"), "stty size in the pod container never showed 27x95: \(session.text.debugDescription)")
        session.resize(rows: 35, columns: 81)
        #expect(session.typeUntil("35 81", "second"), "a resize did not reach the pod container: \(session.text.debugDescription)")
        session.type("end\r")
        let ttyStatus = session.wait(120)
        #expect(ttyStatus == 6, "pod container with -t: exit status \(ttyStatus); output \(session.text.debugDescription)")

        // A second container of another image, detached; all of the pod runs in ONE VM.
        let betaLog = directory + "/beta.log"
        let second = try daemon.ctr(["run", "-d", "--log-uri", "file://" + betaLog, "--runtime", runtime] + member + [beta.reference, "pod-beta", "sh", "-c",
                                     "cat /etc/pod-image; test -e /etc/only-alpha || echo no-alpha; echo pid=$$; test -e /dev/vda || echo no-disks; "
                                     + "mount -t tmpfs none /tmp 2>/dev/null || echo no-mount; echo $$ > /tmp/beta.pid; echo beta-ready; sleep 600"], timeout: 600)
        try #require(second.status == 0, "ctr run -d (beta): \(second.status) \(second.errors); \(daemon.logTail)")
        try #require(eventually(300) { ((try? String(contentsOfFile: betaLog, encoding: .utf8)) ?? "").contains("beta-ready") },
                     "pod container beta did not start: \((try? String(contentsOfFile: betaLog, encoding: .utf8)) ?? "") \(daemon.logTail)")
        let betaOutput = (try? String(contentsOfFile: betaLog, encoding: .utf8)) ?? ""
        // Inside the pod, a container is isolated as runc would isolate it: its own files, a PID
        // namespace of its own (it is pid 1 there), a /dev without the VM's disks, and no
        // CAP_SYS_ADMIN (it cannot mount).
        #expect(betaOutput.hasPrefix("beta\nno-alpha\npid=1\nno-disks\nno-mount\n"), "pod container beta's output: \(betaOutput.debugDescription)")
        let images = commandLines(directory, containing: " --image ")
        // The VMM (and its jail's supervisor, a fork with the same command line) gets the control socket.
        let vmms = Set(commandLines(directory, containing: "--api-socket").filter { !$0.contains(" --image ") })
        #expect(images.count == 1 && vmms.count == 1, "one VM for the pod: vireo runs \(images), VMMs \(vmms)")
        let shims = ContainerdDaemon.processes(mentioning: "containerd-shim-vireo-v2", except: nil).filter { pid in
            String(decoding: (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(directory)
        }
        #expect(shims.count == 1, "one shim for the pod: \(shims)")
        let listed = try daemon.ctr(["task", "ls"])
        #expect(listed.output.contains("pod-beta") && listed.output.split(separator: "\n").filter { $0.contains("RUNNING") }.count == 2,
                "ctr task ls: \(listed.output)")

        // `ctr task exec` into the pod container: its root, its processes.
        let exec = try daemon.ctr(["task", "exec", "--exec-id", "probe", "pod-beta", "sh", "-c",
                                   "cat /etc/pod-image; kill -0 $(cat /tmp/beta.pid) && echo sees-beta; exit 6"], timeout: 300)
        #expect(exec.status == 6 && exec.output == "beta\nsees-beta\n", "ctr task exec in pod-beta: status \(exec.status), stdout \(exec.output.debugDescription), stderr \(exec.errors)")

        // `ctr task kill` stops the pod container, not the pod.
        let killed = try daemon.ctr(["task", "kill", "-s", "KILL", "pod-beta"])
        #expect(killed.status == 0, "ctr task kill pod-beta: \(killed.errors)")
        #expect(eventually(120) { ((try? daemon.ctr(["task", "ls"]).output) ?? "").split(separator: "\n").contains { $0.contains("pod-beta") && $0.contains("STOPPED") } },
                "pod-beta did not stop: \(daemon.logTail)")
        let deleted = try daemon.ctr(["task", "delete", "pod-beta"])
        #expect(deleted.status == 0 && deleted.errors.contains("exit code 137"), "ctr task delete pod-beta: \(deleted.status) \(deleted.errors)")
        _ = try daemon.ctr(["container", "rm", "pod-beta"])
        #expect(((try? daemon.ctr(["task", "ls"]).output) ?? "").contains("RUNNING"), "the sandbox stopped with its container")

        // Stopping the sandbox stops the VM; then nothing of the pod is left.
        let stopped = try daemon.ctr(["task", "kill", "-s", "KILL", "pod"])
        #expect(stopped.status == 0, "ctr task kill pod: \(stopped.errors)")
        #expect(eventually(120) { ((try? daemon.ctr(["task", "ls"]).output) ?? "").contains("STOPPED") }, "the sandbox did not stop: \(daemon.logTail)")
        _ = try daemon.ctr(["task", "delete", "pod"])
        _ = try daemon.ctr(["container", "rm", "pod"])
        expectNothingLeft(daemon, "pod", "after deleting the pod")
        expectNothingLeft(daemon, "pod-beta", "after deleting the pod")
        expectNothingLeft(daemon, "pod-alpha", "after deleting the pod")
    }
}
