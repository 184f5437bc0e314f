import Foundation
import Testing

/// A guest booted under the daemon whose init keeps appending to a file on its ext4 disk, reading
/// it back and connecting to a TCP server on the host through passt is snapshotted through the API
/// while it works and killed; two clones of the snapshot — one `vireo run --restore`, one restored
/// by the daemon — run side by side on copy-on-write overlays over one base, each goes on with the
/// same file (lines written before and after) and reaches the host server through its own passt. Runs on every host kind (on PVM hosts the
/// loop's system calls go through the test kernel's patch, and each iteration is slower).
@Suite(.enabled { try TestEnvironment.available("SnapshotWorkloadTests", .kvm, .kernel) })
struct SnapshotWorkloadTests {
    /// `VIREO-LOOP i lines=N tcp=ok|fail` every 100 ms; line i of /work.log is `line i`.
    static let loopInitSource = #"""
    #include <arpa/inet.h>
    #include <fcntl.h>
    #include <netinet/in.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/socket.h>
    #include <unistd.h>

    static int lines(void) {
        char buffer[65536];
        int fd = open("/work.log", O_RDONLY), count = 0;
        long n;
        if (fd < 0) return -1;
        while ((n = read(fd, buffer, sizeof buffer)) > 0)
            for (long i = 0; i < n; i++) count += buffer[i] == '\n';
        close(fd);
        return count;
    }

    int main(void) {
        const char *gateway = getenv("vireo_gw"), *port = getenv("vireo_port");
        for (int i = 0;; i++) {
            char text[128];
            int fd = open("/work.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
            int length = snprintf(text, sizeof text, "line %d\n", i);
            if (fd >= 0) { write(fd, text, length); fsync(fd); close(fd); }
            int ok = 0;
            if (gateway && port) {
                int t = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(port)) };
                inet_pton(AF_INET, gateway, &address.sin_addr);
                if (t >= 0 && connect(t, (struct sockaddr *)&address, sizeof address) == 0) {
                    length = snprintf(text, sizeof text, "tcp %d\n", i);
                    ok = write(t, text, length) == length;
                }
                if (t >= 0) close(t);
            }
            length = snprintf(text, sizeof text, "VIREO-LOOP %d lines=%d tcp=%s\n", i, lines(), ok ? "ok" : "fail");
            write(1, text, length);
            usleep(100000);
        }
    }
    """#

    /// (index, lines, tcp ok) of each loop line in the console output.
    static func loops(_ output: String) -> [(index: Int, lines: Int, tcp: Bool)] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 4, words[0] == "VIREO-LOOP", let index = Int(words[1]),
                  words[2].hasPrefix("lines="), let count = Int(words[2].dropFirst(6)) else { return nil }
            return (index, count, words[3] == "tcp=ok")
        }
    }

    /// Accepts the guest's connections all the time (a full backlog would stall its loop in
    /// connect) and keeps the iteration numbers they carried.
    final class TCPCollector: @unchecked Sendable {
        private let lock = NSLock()
        private var indices: [Int] = []
        private var stopped = false

        init(_ listener: TCPListener) {
            nonisolated(unsafe) let listener = listener  // only this thread uses it
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    guard let line = listener.acceptLine(timeout: 1) else { continue }
                    if line.hasPrefix("tcp "), let index = Int(line.dropFirst(4)) { lock.withLock { indices.append(index) } }
                }
            }
        }

        func stop() { lock.withLock { stopped = true } }

        /// Waits for a connection carrying an iteration after `after`.
        func wait(after: Int, timeout: Double) -> Int? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let index = lock.withLock({ indices.first { $0 > after } }) { return index }
                usleep(50_000)
            }
            return nil
        }
    }

    /// A loop line at or past `index` whose TCP connection succeeded, within `timeout`.
    static func waitForLoop(_ output: () -> String, atLeast index: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if loops(output()).contains(where: { $0.index >= index && $0.tcp }) { return true }
            usleep(200_000)
        }
        return false
    }

    @Test func restoredGuestsKeepWritingFilesAndReachingTheHost() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"))
        let hardware = TestEnvironment.host == .hardware
        let daemon = try DaemonProcess()
        defer { daemon.stop() }
        let scratch = URL(fileURLWithPath: daemon.directory)
        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        let root = path("root")
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try SnapshotWorkloadTests.loopInitSource.write(toFile: path("loop.c"), atomically: true, encoding: .utf8)
        let gcc = try DeviceBootTests.run("/usr/bin/gcc", ["-static", "-O2", "-o", root + "/loop-init", path("loop.c")])
        try #require(gcc.status == 0, "gcc -static: \(gcc.output)")
        let disk = path("disk.img")
        let mkfs = try DeviceBootTests.run("/sbin/mkfs.ext4", ["-q", "-d", root, disk, "32M"])
        try #require(mkfs.status == 0, "mkfs.ext4: \(mkfs.output)")

        let listener = try TCPListener()
        let collector = TCPCollector(listener)
        defer { collector.stop() }
        let gateway = try #require(DeviceBootTests.hostNetwork()?.gateway, "no default route: passt needs one")
        let cmdline = "console=ttyS0 panic=-1 lpj=1000000 ip=dhcp root=/dev/vda rw init=/loop-init vireo_gw=\(gateway) vireo_port=\(listener.port)"

        // The working guest runs under the daemon.
        try daemon.create("work", kernel: kernel, [
            ("memoryMiB", .int(256)), ("cmdline", .string(cmdline)),
            ("disks", .array([.object([("path", .string(disk))])])),
            ("nets", .array([.object([("mode", .string("user"))])])),
        ])
        #expect(try daemon.action("work", "start").state == "running")
        #expect(daemon.waitForLog("work", "VIREO-LOOP 10 ", timeout: hardware ? 120 : 400), "console: \(daemon.logs("work").suffix(3000))")
        #expect(collector.wait(after: -1, timeout: 30) != nil, "the booted guest reaches the host server")

        // Snapshot it while the loop runs (paused for the snapshot and the disk copy), then end it:
        // from here on the restored clones are the only ones using the disk, each through an overlay.
        #expect(try daemon.action("work", "pause").state == "paused")
        let snapshot = path("snap")
        let taken = try daemon.request("POST", "/vms/work/snapshot", json: .object([("path", .string(snapshot))]))
        #expect(taken.status == 201, "snapshot: \(taken.text)")
        let base = path("base.img")
        try FileManager.default.copyItem(atPath: disk, toPath: base)
        let last = try #require(SnapshotWorkloadTests.loops(daemon.logs("work")).last, "no loop line before the snapshot")
        _ = try daemon.action("work", "kill")

        // Two clones side by side: one `vireo run --restore`, one restored through the daemon.
        let direct = try GuestProcess(arguments: ["run", "--restore", snapshot, "--disk", "\(path("direct.ovl")),backing=\(base)",
                                                  "--api-socket", path("direct.sock"), "--no-stdin"])
        defer { direct.stop() }
        let created = try daemon.request("POST", "/vms", json: .object([
            ("name", .string("clone")), ("restore", .string(snapshot)),
            ("disks", .array([.object([("path", .string(path("clone.ovl"))), ("backing", .string(base))])])),
        ]))
        #expect(created.status == 201, "\(created.text)")
        #expect(try daemon.action("clone", "start").state == "running")

        let ahead = last.index + (hardware ? 20 : 4)
        #expect(SnapshotWorkloadTests.waitForLoop({ direct.output }, atLeast: ahead, timeout: hardware ? 60 : 400),
                "restored output: \(direct.output.suffix(2000)) \(direct.errorOutput)")
        #expect(SnapshotWorkloadTests.waitForLoop({ daemon.logs("clone") }, atLeast: ahead, timeout: hardware ? 60 : 400),
                "clone console: \(daemon.logs("clone").suffix(2000))")
        #expect(!direct.output.contains("Linux version"), "a restore continues, it does not boot")
        #expect(collector.wait(after: last.index, timeout: 30) != nil, "the host server hears the restored guests")
        for (name, output) in [("vireo run --restore", direct.output), ("daemon clone", daemon.logs("clone"))] {
            let after = SnapshotWorkloadTests.loops(output).filter { $0.index > last.index }
            #expect(after.first.map { $0.index <= last.index + 2 } == true,
                    "\(name) continues from the snapshot's iteration \(last.index): \(after.prefix(3))")
            // The file holds the lines of both runs: every loop reads back one line per iteration so far.
            for loop in after { #expect(loop.lines >= loop.index + 1, "\(name): line count \(loop.lines) at iteration \(loop.index)") }
            TestEnvironment.log("workload restore (\(name)): snapshot at iteration \(last.index), reached \(after.last?.index ?? -1)")
        }
        _ = try? UnixSocket.request(path("direct.sock"), "stop")
        _ = direct.waitForExit(timeout: 30)
        _ = try? daemon.action("clone", "kill")
    }
}
