import Foundation
import Manager
import Testing

extension DaemonTests {
    /// A VMM that dies during its start while the daemon's monitor is the one recording the exit.
    /// A CI run once hung here: the start's wait spun on the supervisor while the monitor waited
    /// for the shim's exit status, and the daemon never answered another request.
    @Suite struct ExitRace {
        /// A stand-in VMM (`--vmm-binary`, run as `<it> run --spec FILE` in the VM directory): it
        /// listens on the spec's control socket and, once the start's `status` request is in, stops
        /// its shim (no exit status gets published, so recording the exit waits for one) and dies,
        /// while a child holds the connection open for a second: the monitor sees the exit first.
        static let standInVMM = """
            #!/usr/bin/env python3
            import json, os, signal, socket, sys, time
            spec = json.load(open(sys.argv[sys.argv.index("--spec") + 1]))
            server = socket.socket(socket.AF_UNIX)
            server.bind(spec["control"]["apiSocket"])
            server.listen(1)
            connection, _ = server.accept()
            open("shim.pid", "w").write(str(os.getppid()))
            os.kill(os.getppid(), signal.SIGSTOP)
            if os.fork() == 0:
                time.sleep(1.0)
                os._exit(0)
            os._exit(2)
            """

        @Test func aVMMThatDiesWhileTheMonitorRecordsItFailsTheStartAndTheDaemonAnswers() throws {
            let scratch = "/tmp/vireo-exitrace-\(getpid())"
            try? FileManager.default.removeItem(atPath: scratch)
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let standIn = scratch + "/stand-in-vmm"
            try Data(ExitRace.standInVMM.utf8).write(to: URL(fileURLWithPath: standIn))
            chmod(standIn, 0o755)

            let daemon = try DaemonProcess(extraArguments: ["--vmm-binary", standIn])
            defer { daemon.stop() }
            try Data("not a kernel".utf8).write(to: URL(fileURLWithPath: daemon.directory + "/kernel"))
            try daemon.create("racer", kernel: daemon.directory + "/kernel")
            let shimFile = daemon.stateDirectory + "/vms/racer/shim.pid"
            defer {
                // The shim is stopped: end it whatever happened.
                if let text = try? String(contentsOfFile: shimFile, encoding: .utf8), let shim = Int32(text) { kill(shim, SIGKILL) }
            }

            // The monitor waits 2 s for a status that never comes, then records a crash: the
            // start's answer follows. A daemon stuck in the start answers nothing at all.
            let started = Date()
            let reply = try daemon.client.send("POST", "/vms/racer/start", timeout: 20)
            let seconds = Date().timeIntervalSince(started)
            #expect(FileManager.default.fileExists(atPath: shimFile), "the stand-in VMM never got the start's status request")
            #expect(reply.status == 422, "\(reply.status) \(reply.text)")
            #expect(reply.json?["error"]?["code"]?.stringValue == "start_failed", "\(reply.text)")
            #expect(seconds < 15, "the start took \(seconds) s")
            let vm = try daemon.vm("racer")
            #expect(vm.state == "crashed", "\(vm.serialized())")
            #expect(vm.pid == nil)
            #expect(try daemon.list().count == 1, "the daemon answers after it")
        }
    }
}
