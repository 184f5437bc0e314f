import Foundation
import Images
import Testing

/// The terminal, exec stdin and OOM parts of ContainerdShimTests (they share its containerd and its
/// warm-up boot: every VM start costs seconds here).
extension ContainerdShimTests {
    /// `ctr run -t` on a pty: the program's stdio is a terminal in the guest, with the size ctr's
    /// terminal has; resizing ctr's terminal (SIGWINCH → ResizePty → the shim's pty → vireo → the
    /// guest's console) reaches the program; keys typed reach it (the guest's line discipline echoes
    /// and ends lines) and its exit status comes back.
    func checkTerminalRun(_ daemon: ContainerdDaemon) throws {
        let script = #"tty; while read line; do [ "$line" = end ] && exit 5; echo "got-$line $(stty size)"; done"#
        let session = try TerminalSession(["/usr/bin/ctr", "--address", daemon.socket, "run", "-t", "--runtime", ContainerdShimTests.runtime,
                                           "--rm", ContainerdShimTests.reference, "tty", "sh", "-c", script],
                                          environment: daemon.environment, rows: 30, columns: 100)
        let started = Date()
        let sawTerminal = session.waitFor(300) { $0.contains("/dev/") || $0.contains("not a tty") }
        #expect(sawTerminal && session.text.contains("/dev/console") && !session.text.contains("not a tty"),
                "ctr run -t: the program's stdin is not a terminal: \(session.text.debugDescription); \(daemon.logTail)")
        TestEnvironment.log("containerd: ctr run -t to the program's first output \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        // ctr sends ResizePty right after Start; the line is typed until the size shows (bounded).
        #expect(session.typeUntil("30 100", "first"), "stty size in the guest never showed ctr's 30x100: \(session.text.debugDescription)")
        session.resize(rows: 41, columns: 123)
        #expect(session.typeUntil("41 123", "second"), "a resize of ctr's terminal did not reach the guest: \(session.text.debugDescription)")
        session.type("end\r")
        let status = session.wait(120)
        #expect(status == 5, "ctr run -t exit status \(status); output \(session.text.debugDescription)")
        expectNothingLeft(daemon, "tty", "after ctr run -t --rm")
    }

    /// In the running `container`: `ctr task exec -t` gets a pty in the guest (its own devpts), its
    /// size and a resize, and typed input; `ctr task exec` without -t streams its stdin (piped to ctr).
    func checkExecTerminalAndStdin(_ daemon: ContainerdDaemon, container: String) throws {
        let piped = try daemon.ctr(["task", "exec", "--exec-id", "stdin", container, "sh", "-c", "read a; read b; echo got-$a-$b; exec cat"],
                                   timeout: 300, input: "one\ntwo\nthe rest\nand more\n")
        #expect(piped.status == 0 && piped.output == "got-one-two\nthe rest\nand more\n",
                "ctr task exec with stdin: status \(piped.status), stdout \(piped.output.debugDescription), stderr \(piped.errors)")

        let script = #"tty; while read line; do [ "$line" = end ] && exit 6; echo "got-$line $(stty size)"; done"#
        let session = try TerminalSession(["/usr/bin/ctr", "--address", daemon.socket, "task", "exec", "-t", "--exec-id", "tty-exec",
                                           container, "sh", "-c", script], environment: daemon.environment, rows: 25, columns: 90)
        #expect(session.waitFor(300) { $0.contains("/dev/") || $0.contains("not a tty") } && session.text.contains("/dev/pts/"),
                "ctr task exec -t: no pty in the guest: \(session.text.debugDescription)")
        #expect(session.typeUntil("25 90", "first"), "stty size in the exec never showed 25x90: \(session.text.debugDescription)")
        session.resize(rows: 33, columns: 77)
        #expect(session.typeUntil("33 77", "second"), "a resize did not reach the exec's pty: \(session.text.debugDescription)")
        session.type("end\r")
        let status = session.wait(120)
        #expect(status == 6, "ctr task exec -t exit status \(status); output \(session.text.debugDescription)")
    }

    /// An OOM kill reaches containerd as TaskOOM, with exit status 137: the host kernel kills the
    /// VMM when the VM's memory cgroup hits its limit. (The guest kernel's own OOM killer is reported
    /// too, but a guest filling its 256 MiB takes over ten minutes on this PVM host: every page is a
    /// shadow-paging fault, and a guest near OOM thrashes on its file pages first.) The limit is
    /// written to the cgroup directly, as an operator's or the kubelet's would be, below what the
    /// shim's Update accepts: 16 MiB above what the VM uses now; the program then allocates.
    func checkHostOOM(_ daemon: ContainerdDaemon) throws {
        let eventsPath = daemon.directory + "/events.log"
        _ = FileManager.default.createFile(atPath: eventsPath, contents: nil)
        let events = Process()
        events.executableURL = URL(fileURLWithPath: "/usr/bin/ctr")
        events.arguments = ["--address", daemon.socket, "events"]
        events.environment = daemon.environment
        let eventsFile = try FileHandle(forWritingTo: URL(fileURLWithPath: eventsPath))
        events.standardOutput = eventsFile
        events.standardError = eventsFile
        try events.run()
        defer {
            kill(events.processIdentifier, SIGKILL)
            try? eventsFile.close()
        }
        let logPath = daemon.directory + "/oomc.log"
        // 1 MiB strings kept in an array: each a fresh allocation the guest touches.
        let hog = #"busybox awk 'BEGIN { s = "x"; for (i = 0; i < 20; i++) s = s s; for (i = 0; ; i++) a[i] = s i }'"#
        let started = try daemon.ctr(["run", "-d", "--log-uri", "file://" + logPath, "--runtime", ContainerdShimTests.runtime,
                                      ContainerdShimTests.reference, "oomc", "sh", "-c",
                                      "echo ready; while [ ! -e /tmp/go ]; do sleep 1; done; echo allocating; " + hog], timeout: 600)
        try #require(started.status == 0, "ctr run -d: \(started.status) \(started.errors)")
        try #require(eventually(300) { ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").contains("ready") }, "oomc did not start: \(daemon.logTail)")
        let processes = try daemon.ctr(["task", "ps", "oomc"])
        let vireoPID = processes.output.split(separator: "\n").dropFirst().first?.split(separator: " ").first.flatMap { Int32($0) } ?? 0
        let memory = try #require(HostProcesses.cgroupDirectory(of: vireoPID, controller: "memory"), "the VM's memory cgroup (vireo \(vireoPID))")
        let v2 = FileManager.default.fileExists(atPath: memory + "/memory.max")
        let usageText = (try? String(contentsOfFile: memory + (v2 ? "/memory.current" : "/memory.usage_in_bytes"), encoding: .utf8)) ?? ""
        let usage = try #require(UInt64(usageText.trimmingCharacters(in: .whitespacesAndNewlines)), "the cgroup's usage: \(usageText)")
        try "\(usage + 16 << 20)".write(toFile: memory + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), atomically: false, encoding: .utf8)
        let go = try daemon.ctr(["task", "exec", "--exec-id", "go", "oomc", "sh", "-c", ": > /tmp/go"], timeout: 300)
        #expect(go.status == 0, "exec creating /tmp/go: \(go.status) \(go.errors)")
        let stopped = eventually(300) { ((try? daemon.ctr(["task", "ls"]).output) ?? "").split(separator: "\n").contains { $0.hasPrefix("oomc") && $0.contains("STOPPED") } }
        #expect(stopped, "the VM over its cgroup's limit did not stop: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "") \(daemon.logTail)")
        let sawOOM = eventually(30) { ((try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? "").contains("/tasks/oom") }
        let log = (try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? ""
        #expect(sawOOM && log.split(separator: "\n").contains { $0.contains("/tasks/oom") && $0.contains(#""container_id":"oomc""#) },
                "ctr events shows no /tasks/oom for oomc: \(log.suffix(2000))")
        kill(events.processIdentifier, SIGKILL)  // before the check that nothing of the test is left
        _ = eventually(10) { !events.isRunning }
        let deleted = try daemon.ctr(["task", "delete", "oomc"])
        #expect(deleted.status == 0 && deleted.errors.contains("exit code 137"), "ctr task delete: status \(deleted.status) \(deleted.errors)")
        _ = try daemon.ctr(["container", "rm", "oomc"])
        expectNothingLeft(daemon, "oomc", "after the OOM-killed container")
    }
}
