import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12, finding 2: idle, half-sent requests cannot exhaust the daemon's descriptors; a VM
    /// with `restart: always` keeps its one VMM (no false "crashed", no second VMM) and the daemon
    /// keeps answering once the clients go.
    @Suite struct DescriptorExhaustion {
        /// Runs `body` (which spawns the daemon) with this process's soft descriptor limit at
        /// `soft`, then raises it to the hard limit: the daemon inherits the low one.
        private func withSoftLimit<T>(_ soft: rlim_t, _ body: () throws -> T) rethrows -> T {
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            var low = limit
            low.rlim_cur = min(soft, limit.rlim_max)
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &low)
            defer {
                limit.rlim_cur = limit.rlim_max
                setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            }
            return try body()
        }

        @Test func idleConnectionsNeverCostAVMASecondVMM() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            // A daemon started with a 512-descriptor soft limit (as under many init systems' 1024).
            let daemon = try withSoftLimit(512) { try DaemonProcess() }
            defer { daemon.stop() }
            try daemon.create("busy", kernel: counter, [("memoryMiB", .int(32)), ("restartPolicy", .string("always"))])
            let started = try daemon.action("busy", "start")
            let pid = try #require(started.pid)

            // More half-sent requests than that daemon could hold without raising its limit.
            var clients: [Int32] = []
            defer { for fd in clients { close(fd) } }
            for _ in 0..<1100 {
                guard let fd = try? Manager.UnixSocket.connect(daemon.socket, timeout: 1) else { break }
                _ = "GET /info HTTP/1.1\r\n".withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                clients.append(fd)
            }
            #expect(clients.count >= 1000, "only \(clients.count) connections")
            sleep(3)  // the monitor polls liveness meanwhile
            #expect(daemon.process.process.isRunning, "the daemon died: \(daemon.process.errorOutput.suffix(500))")
            for fd in clients { close(fd) }
            clients = []

            let vm = try #require(daemon.waitForVM("busy", timeout: 10) { $0.state == "running" })
            #expect(vm.pid == pid, "the VM got another VMM: \(vm)")
            #expect(try daemon.request("GET", "/info").status == 200)
            let vmms = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init).filter {
                ProcessProbe.cwd($0) == daemon.stateDirectory + "/vms/busy" && HostProcess.vcpuThreads(of: $0).count > 0
            } ?? []
            #expect(vmms.count == 1, "VMMs for one VM: \(vmms)")
        }
    }
}

private enum ProcessProbe {
    static func cwd(_ pid: Int32) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") }
}
