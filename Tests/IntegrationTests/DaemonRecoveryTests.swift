import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Many VMs at once, crashes of one VMM, and crashes of the daemon itself.
    @Suite struct Recovery {
        @Test func tenVMsCreatedAndStartedConcurrently() throws {
            // The idle micro-guest halts after its marker: ten of them cost no host CPU.
            let idle = try #require(TestEnvironment.micro("idle"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let names = (0..<10).map { "vm-\($0)" }
            let errors = Locked([String]())
            let started = Date()
            DispatchQueue.concurrentPerform(iterations: names.count) { index in
                do {
                    try daemon.create(names[index], kernel: idle, [("memoryMiB", .int(32))])
                    let vm = try daemon.action(names[index], "start")
                    if vm.state != "running" { throw DaemonTestFailure("\(names[index]) is \(vm.state ?? "?")") }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                }
            }
            TestEnvironment.log("10 VMs created and started concurrently in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
            #expect(errors.current.isEmpty, "\(errors.current)")
            for name in names {
                #expect(daemon.waitForLog(name, "VIREO-MICRO idle", timeout: 60), "\(name): \(daemon.logs(name))")
            }
            let listed = try daemon.list()
            #expect(listed.compactMap { $0["name"]?.stringValue } == names.sorted())
            #expect(listed.allSatisfy { $0.state == "running" && $0.pid != nil }, "\(listed.map { "\($0["name"]!.serialized()) \($0.state ?? "?")" })")
            #expect(Set(listed.compactMap(\.pid)).count == 10, "each VM has a VMM process of its own")
            for name in names { try daemon.action(name, "kill") }
        }

        @Test func aKilledVMMIsReportedCrashedAndRestartedWhileTheOthersRun() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("victim", kernel: counter, [("memoryMiB", .int(32)), ("restartPolicy", .string("on-failure"))])
            try daemon.create("fragile", kernel: counter, [("memoryMiB", .int(32))])  // policy "no"
            try daemon.create("bystander", kernel: counter, [("memoryMiB", .int(32))])
            for name in ["victim", "fragile", "bystander"] { try daemon.action(name, "start") }
            let bystanderPID = try #require(try daemon.vm("bystander").pid)

            let victimPID = try #require(try daemon.vm("victim").pid)
            kill(victimPID, SIGKILL)
            let restarted = daemon.waitForVM("victim") { $0.state == "running" && $0.pid != victimPID }
            #expect(restarted?.state == "running", "victim: \(restarted?.serialized() ?? "nil")")
            #expect(restarted?["restartCount"]?.intValue == 1)
            #expect(restarted?["lastExit"]?["reason"]?.stringValue == "the VMM was killed by signal 9")
            #expect(restarted?["lastExit"]?["status"]?.intValue == 137)

            let fragilePID = try #require(try daemon.vm("fragile").pid)
            kill(fragilePID, SIGKILL)
            let crashed = daemon.waitForVM("fragile") { $0.state == "crashed" }
            #expect(crashed?.state == "crashed", "fragile: \(crashed?.serialized() ?? "nil")")
            usleep(500_000)
            #expect(try daemon.vm("fragile").state == "crashed", "policy 'no' does not restart")

            let bystander = try daemon.vm("bystander")
            #expect(bystander.state == "running" && bystander.pid == bystanderPID, "the other VM is untouched")
            #expect(kill(bystanderPID, 0) == 0)
            for name in ["victim", "bystander"] { try daemon.action(name, "kill") }
        }

        @Test func aRestartedDaemonListsTheSameVMsAndReadoptsTheRunningOnes() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let idle = try #require(TestEnvironment.micro("idle"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("keep-running", kernel: counter, [("memoryMiB", .int(32))])
            try daemon.create("keep-paused", kernel: idle, [("memoryMiB", .int(32))])
            try daemon.create("keep-stopped", kernel: idle, [("memoryMiB", .int(32)), ("cpus", .int(2))])
            try daemon.create("dies-meanwhile", kernel: idle, [("memoryMiB", .int(32)), ("restartPolicy", .string("on-failure"))])
            try daemon.create("auto", kernel: idle, [("memoryMiB", .int(32)), ("autostart", .bool(true))])
            for name in ["keep-running", "keep-paused", "dies-meanwhile"] { try daemon.action(name, "start") }
            try daemon.action("keep-paused", "pause")
            let before = try daemon.list()
            let pids = Dictionary(uniqueKeysWithValues: before.compactMap { vm in vm.pid.map { (vm["name"]!.stringValue!, $0) } })

            // The daemon dies; one VMM dies while no daemon is watching.
            kill(daemon.pid, SIGKILL)
            _ = daemon.process.waitForExit(timeout: 10)
            let runningPID = try #require(pids["keep-running"])
            #expect(kill(runningPID, 0) == 0, "a VMM outlives its daemon")
            kill(try #require(pids["dies-meanwhile"]), SIGKILL)
            usleep(200_000)
            try daemon.crashAndRestart()

            let after = try daemon.list()
            #expect(after.compactMap { $0["name"]?.stringValue } == before.compactMap { $0["name"]?.stringValue })
            let running = try daemon.vm("keep-running")
            #expect(running.state == "running" && running.pid == runningPID, "re-adopted: \(running.serialized())")
            let paused = try daemon.vm("keep-paused")
            #expect(paused.state == "paused" && paused.pid == pids["keep-paused"], "re-adopted paused: \(paused.serialized())")
            let stopped = try daemon.vm("keep-stopped")
            #expect(stopped.state == "defined" && stopped["cpus"]?.intValue == 2)
            // Its exit was recorded from the shim's status file, and its policy restarted it.
            let revived = daemon.waitForVM("dies-meanwhile") { $0.state == "running" }
            #expect(revived?.state == "running" && revived?["restartCount"]?.intValue == 1, "\(revived?.serialized() ?? "nil")")
            #expect(revived?["lastExit"]?["reason"]?.stringValue == "the VMM was killed by signal 9")
            // autostart VMs start with the daemon.
            #expect(daemon.waitForVM("auto") { $0.state == "running" }?.state == "running")

            // The adopted VMM is still driven: pause/resume/stop work, and its console is still logged.
            #expect(try daemon.action("keep-paused", "resume").state == "running")
            #expect(daemon.waitForLog("keep-running", "count=", timeout: 10))
            #expect(try daemon.action("keep-running", "stop").state == "stopped")
            usleep(100_000)
            #expect(kill(runningPID, 0) != 0)

            // No duplicates: exactly one VMM per running VM.
            let vmmCount = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { Int32($0) }.filter { pid in
                let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
                let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
                let arguments = cmdline.split(separator: "\0")
                // A jailed VM has two: its root supervisor and the VMM, the one with vCPU threads.
                return cwd?.hasPrefix(daemon.stateDirectory) == true && arguments.count > 1 && arguments[1] == "run"
                    && !HostProcess.vcpuThreads(of: pid).isEmpty
            }.count
            let runningNow = try daemon.list().filter { $0.state == "running" || $0.state == "paused" }.count
            #expect(vmmCount == runningNow, "\(vmmCount) VMM processes for \(runningNow) running VMs")
        }
    }
}
