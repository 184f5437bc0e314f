import Foundation
import Testing

/// `vireo run --image` with `-p`, `--ulimit` and `-t`, end to end: two boots (one publishing a port
/// the host connects through, one on a pseudo-terminal), and the refusals of bad values, which boot
/// nothing.
@Suite(.enabled { try TestEnvironment.available("ImageNetworkTests", .kvm, .kernel, .executable("/bin/busybox"),
                                                .executable("/usr/sbin/mke2fs"), .executable("/usr/bin/passt")) })
struct ImageNetworkTests {
    private func scratch(_ name: String) throws -> String { try TestEnvironment.freshDirectory("vireo-imgnet-\(name)").path }

    @Test func publishedPortReachesAProgramListeningInTheGuestWithItsLimits() throws {
        let dir = try scratch("publish")
        try TestImages.oneLayer(at: dir + "/image")
        let hostPort = try Loopback.freePort()
        let script = """
            echo "limits $(ulimit -n) $(ulimit -Hn)"; echo "nics $(ls /sys/class/net | tr '\\n' ' ')"; \
            echo "resolv $(cat /etc/resolv.conf)"; echo listening; \
            while :; do echo from-guest | nc -l -p 8080 > /tmp/got; [ -s /tmp/got ] && break; done; echo "got $(cat /tmp/got)"
            """
        let guest = try GuestProcess(arguments: [
            "run", "--memory", "256M", "--state-dir", dir + "/state", "-p", "127.0.0.1:\(hostPort):8080", "--ulimit", "nofile=256:512",
            "--image", dir + "/image", "--", "sh", "-c", script,
        ], environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        defer { guest.stop() }
        guest.closeInput()
        let listening = guest.waitForOutput("listening\n", timeout: 600)
        #expect(listening, "the program never started; stdout: \(guest.output.suffix(2000)) stderr: \(guest.errorOutput.suffix(2000))")
        // passt accepts on the host before the guest listens: until nc is up, a connection ends empty
        // (and the guest's nc, one connection per run, listens again until it has read something).
        var received = ""
        let deadline = Date().addingTimeInterval(120)
        while listening && Date() < deadline && guest.process.isRunning {
            received = Loopback.exchange(port: hostPort, send: "from-host\n")
            if received.contains("from-guest") { break }
            usleep(500_000)
        }
        #expect(received == "from-guest\n", "read through 127.0.0.1:\(hostPort): \(received.debugDescription)")
        let status = guest.waitForExit(timeout: 120)
        let output = guest.output
        #expect(status == 0, "exit status \(status ?? -1); stdout: \(output.suffix(2000)) stderr: \(guest.errorOutput.suffix(2000))")
        #expect(output.contains("got from-host\n"), "what the guest read: \(output)")
        #expect(output.contains("limits 256 512\n"), "--ulimit nofile=256:512: \(output)")
        #expect(output.contains("nics eth0 lo \n"), "a published port gives the VM one NIC: \(output)")
        #expect(output.contains("resolv nameserver 10.0.2.3\n"), "resolv.conf: \(output)")
    }

    @Test func terminalForTheProgramOnAPseudoTerminal() throws {
        let dir = try scratch("tty")
        try TestImages.oneLayer(at: dir + "/image")
        let script = """
            echo "nics $(ls /sys/class/net | tr '\\n' ' ')"; echo "tty $(tty) size $(stty size) term $TERM"; \
            read line; echo "got $line"; trap 'echo got-INT; exit 5' INT; echo armed; sleep 600 & wait
            """
        let terminal = try PseudoTerminal(rows: 33, columns: 97)
        let vireo = try terminal.spawn([TestEnvironment.vireoBinary, "run", "--memory", "256M", "--state-dir", dir + "/state", "-t",
                                        "--image", dir + "/image", "--", "sh", "-c", script],
                                       environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        defer { kill(vireo, SIGKILL); terminal.reap(vireo) }
        let armedAfterInput = terminal.waitFor("tty ", timeout: 600) && {
            terminal.write("typed-line\r")
            return terminal.waitFor("armed", timeout: 60)
        }()
        #expect(armedAfterInput, "output: \(terminal.output.debugDescription)")
        terminal.write("\u{03}")  // ^C, a byte the guest's terminal turns into SIGINT
        let status = terminal.waitForExit(vireo, timeout: 120)
        let output = terminal.output
        #expect(status == 5, "exit status \(status ?? -1); output: \(output.debugDescription)")
        #expect(output.contains("nics lo \r\n"), "no -p, no --net: loopback only: \(output.debugDescription)")
        #expect(output.contains("size 33 97 term xterm\r\n"), "\(output.debugDescription)")
        // The guest's terminal echoed the line (the host's is raw), and the program read it.
        #expect(output.contains("typed-line\r\n") && output.contains("got typed-line\r\n"), "\(output.debugDescription)")
        #expect(output.contains("^Cgot-INT\r\n") || output.contains("got-INT\r\n"), "\(output.debugDescription)")
    }

    @Test func badValuesAreOneLineAndExit2() throws {
        let dir = try scratch("bad")
        try TestImages.oneLayer(at: dir + "/image")
        let cases: [([String], String)] = [
            (["-p", "8080"], "vireo: -p '8080': expected [IP:]HOST_PORT:GUEST_PORT[/tcp|udp]"),
            (["-p", "0:80"], "vireo: -p '0:80': the host port must be 1–65535, got '0'"),
            (["-p", "80:80/sctp"], "vireo: -p '80:80/sctp': the protocol must be tcp or udp, got 'sctp'"),
            (["-p", "1.2.3:80:80"], "vireo: -p '1.2.3:80:80': '1.2.3' is not an IPv4 address (dotted quad)"),
            (["-p", "80:80", "-p", "80:81"], "vireo: -p '80:81': host port 80/tcp is published twice"),
            (["--net", "tap=vt0", "-p", "80:80"], "vireo: -p needs user networking (passt)"),
            (["--ulimit", "nofile=10:5"], "vireo: --ulimit 'nofile=10:5': the soft limit is above the hard limit"),
            (["--ulimit", "files=1"], "vireo: --ulimit 'files=1': unknown limit 'files'"),
        ]
        for (options, message) in cases {
            let process = try GuestProcess(arguments: ["run", "--state-dir", dir + "/state"] + options + ["--image", dir + "/image", "--", "true"],
                                           environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
            process.closeInput()
            let status = process.waitForExit(timeout: 60)
            for _ in 0..<20 where process.errorOutput.isEmpty { usleep(100_000) }  // the pipe reader may lag the exit
            let lines = process.errorOutput.split(separator: "\n")
            #expect(status == 2 && lines.count == 1 && lines.first.map { $0.hasPrefix(message) } == true,
                    "\(options): status \(status ?? -1), stderr: \(process.errorOutput)")
        }
    }
}
