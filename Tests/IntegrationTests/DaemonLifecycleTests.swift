import Foundation
import Manager
import Testing

extension DaemonTests {
    /// The lifecycle end to end, through the CLI and the API, with real micro-guest VMs.
    @Suite struct Lifecycle {
        @Test func createStartInspectStopDeleteRoundTripThroughTheCLI() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }

            var (status, out, err) = try daemon.cli(["create", "rt", "--kernel", counter, "--memory", "32M", "--cpus", "1", "--cmdline", "console=ttyS0",
                                                     "--pit", "on"])
            #expect(status == 0, "create: \(err)")
            #expect(out == "rt\n")
            #expect(try daemon.vm("rt").state == "defined")

            (status, _, err) = try daemon.cli(["start", "rt"])
            #expect(status == 0, "start: \(err)")
            #expect(daemon.waitForLog("rt", "count=1"), "console log: \(daemon.logs("rt"))")

            (status, out, err) = try daemon.cli(["inspect", "rt"])
            #expect(status == 0, "inspect: \(err)")
            let inspected = try #require(try? JSONParser.parse(out), "inspect printed: \(out)")
            #expect(inspected.state == "running")
            #expect(inspected["memoryMiB"]?.intValue == 32)
            #expect(inspected["vmm"]?["exits"]?["io"]?.intValue ?? 0 > 0, "live VMM status: \(out)")
            // `--pit on` went from the CLI through the definition and the spec to KVM, and the VMM says so.
            #expect(inspected["pit"] == .bool(true) && inspected["vmm"]?["pit"] == .bool(true), "inspect: \(out)")
            let pid = try #require(inspected.pid)
            #expect(kill(pid, 0) == 0)

            (status, out, _) = try daemon.cli(["ls"])
            #expect(status == 0)
            #expect(out.contains("NAME") && out.contains("rt") && out.contains("running"), "ls: \(out)")
            (status, out, _) = try daemon.cli(["ls", "--json"])
            #expect((try? JSONParser.parse(out))?.arrayValue?.first?["name"]?.stringValue == "rt", "ls --json: \(out)")

            (status, out, _) = try daemon.cli(["logs", "rt", "--tail", "2"])
            #expect(status == 0)
            #expect(out.split(separator: "\n").count == 2 && out.contains("count="), "logs --tail 2: \(out)")

            (status, _, err) = try daemon.cli(["stop", "rt"])
            #expect(status == 0, "stop: \(err)")
            let stopped = try daemon.vm("rt")
            #expect(stopped.state == "stopped")
            #expect(stopped["lastExit"]?["reason"]?.stringValue == "stopped by request")
            #expect(stopped.pid == nil)
            usleep(100_000)
            #expect(kill(pid, 0) != 0, "the VMM process is gone")

            (status, _, err) = try daemon.cli(["rm", "rt"])
            #expect(status == 0, "rm: \(err)")
            #expect(try daemon.request("GET", "/vms/rt").status == 404)
            #expect(try daemon.list().isEmpty)
            #expect(!FileManager.default.fileExists(atPath: daemon.stateDirectory + "/vms/rt"))
        }

        @Test func pauseResumeRestartKillAndTheirConflicts() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("pr", kernel: counter, [("memoryMiB", .int(32))])

            // Invalid transitions: a 409 that names the current state.
            let early = try daemon.request("POST", "/vms/pr/pause")
            #expect(early.status == 409)
            #expect(early.json?["error"]?["state"]?.stringValue == "defined")
            #expect(early.errorMessage.contains("it is defined"), "\(early.text)")

            try daemon.action("pr", "start")
            #expect(daemon.waitForLog("pr", "count=1"))
            #expect(try daemon.request("POST", "/vms/pr/start").status == 409)
            #expect(try daemon.request("DELETE", "/vms/pr").status == 409)
            #expect(try daemon.request("PATCH", "/vms/pr", json: .object([("cpus", .int(2))])).status == 409)

            #expect(try daemon.action("pr", "pause").state == "paused")
            let frozen = daemon.logs("pr")
            usleep(600_000)
            #expect(daemon.logs("pr") == frozen, "the guest kept printing while paused")
            #expect(try daemon.request("POST", "/vms/pr/pause").json?["error"]?["state"]?.stringValue == "paused")
            #expect(try daemon.action("pr", "resume").state == "running")
            let resumed = Date()
            while daemon.logs("pr") == frozen, Date().timeIntervalSince(resumed) < 10 { usleep(50_000) }
            #expect(daemon.logs("pr") != frozen, "the guest did not continue after resume")

            let firstPID = try #require(try daemon.vm("pr").pid)
            let restarted = try daemon.action("pr", "restart")
            #expect(restarted.state == "running")
            #expect(restarted.pid != nil && restarted.pid != firstPID)

            let killed = try daemon.action("pr", "kill")
            #expect(killed.state == "stopped")
            #expect(killed["lastExit"]?["reason"]?.stringValue == "killed by request")
            #expect(try daemon.request("POST", "/vms/pr/stop").json?["error"]?["state"]?.stringValue == "stopped")

            // A stopped VM's definition can change.
            let updated = try daemon.request("PATCH", "/vms/pr", json: .object([("cpus", .int(2)), ("restartPolicy", .string("always"))]))
            #expect(updated.status == 200, "\(updated.text)")
            #expect(updated.json?["cpus"]?.intValue == 2 && updated.json?["restartPolicy"]?.stringValue == "always")

            // force-delete of a running VM kills it first.
            try daemon.action("pr", "start")
            let pid = try #require(try daemon.vm("pr").pid)
            #expect(try daemon.request("DELETE", "/vms/pr?force=true").status == 204)
            usleep(100_000)
            #expect(kill(pid, 0) != 0)
        }

        @Test func consoleAttachesThroughTheDaemonAndDetachesWithCtrlBracket() throws {
            let echo = try #require(TestEnvironment.micro("echo"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("con", kernel: echo, [("memoryMiB", .int(32))])
            try daemon.action("con", "start")
            #expect(daemon.waitForLog("con", "echo ready"))

            // Through the API: typed bytes reach the guest, its echo comes back on the same exchange.
            let connection = try daemon.client.openDuplex("POST", "/vms/con/console")
            let (status, _) = try connection.readHead()
            #expect(status == 200)
            try connection.sendChunk(Array("ping-through-daemon".utf8))
            var seen = ""
            let deadline = Date().addingTimeInterval(20)
            while !seen.contains("ping-through-daemon"), Date() < deadline, let chunk = try connection.readBody() {
                seen += String(decoding: chunk, as: UTF8.self)
            }
            #expect(seen.contains("ping-through-daemon"), "console gave: \(seen)")
            try connection.finishBody()
            while (try? connection.readBody()) != nil {}
            connection.close()

            // Through the CLI: stdin is typed, Ctrl-] detaches, the VM keeps running.
            let cli = try GuestProcess(arguments: ["console", "con", "--socket", daemon.socket])
            defer { cli.stop() }
            usleep(300_000)
            cli.send("hello-cli")
            #expect(cli.waitForOutput("hello-cli", timeout: 20), "console output: \(cli.output) \(cli.errorOutput)")
            cli.send("\u{1D}")
            #expect(cli.waitForExit(timeout: 10) == 0, "stderr: \(cli.errorOutput)")
            #expect(try daemon.vm("con").state == "running")
            #expect(daemon.logs("con").contains("hello-cli"), "the console log has what the guest echoed")

            // A stopped VM has no console to attach to.
            try daemon.action("con", "kill")
            let refused = try daemon.request("POST", "/vms/con/console")
            #expect(refused.status == 409 && refused.errorMessage.contains("stopped"), "\(refused.text)")
        }

        @Test func logsFollowEventsAndMetrics() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("obs", kernel: counter, [("memoryMiB", .int(32))])
            try daemon.action("obs", "start")

            // logs -f keeps streaming new output.
            let follower = try GuestProcess(arguments: ["logs", "obs", "-f", "--socket", daemon.socket])
            defer { follower.stop() }
            #expect(follower.waitForOutput("count=3", timeout: 30), "logs -f: \(follower.output) \(follower.errorOutput)")

            // Events: stored history replayed with since=0, then live ones.
            let lines = Locked([String]())
            let watcher = Thread {
                _ = try? daemon.client.stream("GET", "/events?since=0&vm=obs") { chunk in
                    lines.withLock { $0.append(String(decoding: chunk, as: UTF8.self)) }
                    return !lines.current.joined().contains("\"type\":\"stopped\"")
                }
            }
            watcher.start()
            usleep(300_000)
            try daemon.action("obs", "stop")
            let deadline = Date().addingTimeInterval(10)
            while !lines.current.joined().contains("\"type\":\"stopped\""), Date() < deadline { usleep(50_000) }
            let events = lines.current.joined().split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
            let types = events.compactMap { $0["type"]?.stringValue }
            #expect(types == ["created", "starting", "started", "stopping", "stopped"], "events: \(types)")
            #expect(events.allSatisfy { $0["vm"]?.stringValue == "obs" })

            try daemon.action("obs", "start")
            #expect(daemon.waitForLog("obs", "count=2"))
            let metrics = try daemon.request("GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.header("content-type")?.hasPrefix("text/plain") == true)
            let text = metrics.text
            for expected in ["vireo_vm_state{vm=\"obs\",state=\"running\"} 1", "vireo_vms{state=\"running\"} 1",
                             "vireo_vm_memory_bytes{vm=\"obs\"} 33554432", "vireo_vm_uptime_seconds{vm=\"obs\"}",
                             "vireo_vm_exits_total{vm=\"obs\",kind=\"io\"}", "vireo_vm_resident_bytes{vm=\"obs\"}",
                             "# TYPE vireo_vm_exits_total counter"] {
                #expect(text.contains(expected), "metrics lack \(expected):\n\(text)")
            }
            try daemon.action("obs", "kill")
        }
    }
}
