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
        func typeUntil(_ expected: String, _ word: String) -> Bool {
            for _ in 0..<20 {
                session.type(word + "\r")
                if session.waitFor(3, { $0.contains("got-\(word) \(expected)") }) { return true }
            }
            return false
        }
        #expect(typeUntil("30 100", "first"), "stty size in the guest never showed ctr's 30x100: \(session.text.debugDescription)")
        session.resize(rows: 41, columns: 123)
        #expect(typeUntil("41 123", "second"), "a resize of ctr's terminal did not reach the guest: \(session.text.debugDescription)")
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
        func typeUntil(_ expected: String, _ word: String) -> Bool {
            for _ in 0..<20 {
                session.type(word + "\r")
                if session.waitFor(3, { $0.contains("got-\(word) \(expected)") }) { return true }
            }
            return false
        }
        #expect(typeUntil("25 90", "first"), "stty size in the exec never showed 25x90: \(session.text.debugDescription)")
        session.resize(rows: 33, columns: 77)
        #expect(typeUntil("33 77", "second"), "a resize did not reach the exec's pty: \(session.text.debugDescription)")
        session.type("end\r")
        let status = session.wait(120)
        #expect(status == 6, "ctr task exec -t exit status \(status); output \(session.text.debugDescription)")
    }

    /// A program that allocates past the guest's RAM is killed by the guest kernel's OOM killer:
    /// `ctr run` exits 137 and containerd's event stream carries /tasks/oom for the container.
    func checkGuestOOM(_ daemon: ContainerdDaemon) throws {
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
            events.terminate()
            events.waitUntilExit()
            try? eventsFile.close()
        }
        // 1 MiB strings kept in an array: each a fresh allocation, none larger than the heuristic
        // overcommit refuses, so the kernel's OOM killer (not malloc) ends it.
        let hog = #"BEGIN { s = "x"; for (i = 0; i < 20; i++) s = s s; for (i = 0; ; i++) a[i] = s i }"#
        let run = try daemon.ctr(["run", "--runtime", ContainerdShimTests.runtime, "--rm", ContainerdShimTests.reference, "oom",
                                  "busybox", "awk", hog], timeout: 600)
        #expect(run.status == 137, "ctr run of a program past the guest's RAM: status \(run.status), stdout \(run.output.suffix(500).debugDescription), stderr \(run.errors)")
        TestEnvironment.log("containerd: OOM run \(String(format: "%.1f", run.seconds)) s")
        let sawOOM = eventually(30) { ((try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? "").contains("/tasks/oom") }
        let log = (try? String(contentsOfFile: eventsPath, encoding: .utf8)) ?? ""
        #expect(sawOOM && log.split(separator: "\n").contains { $0.contains("/tasks/oom") && $0.contains(#""container_id":"oom""#) },
                "ctr events shows no /tasks/oom: \(log.suffix(2000))")
        expectNothingLeft(daemon, "oom", "after the OOM-killed container")
    }
}
