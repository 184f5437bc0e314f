import Foundation
import Testing

/// Hardware virtualisation only (on PVM hosts a Linux guest's user space cannot make system calls):
/// a booted guest whose init keeps appending to a file on its ext4 disk, reading it back and
/// connecting to a TCP server on the host through passt is snapshotted while it works, killed, and
/// restored; the restored guest goes on with the same file (lines written before and after) and
/// reaches the host server again through a new passt.
@Suite(.enabled(if: TestEnvironment.hasKVM && TestEnvironment.host == .hardware
                && TestEnvironment.path("VIREO_KERNEL") != nil))
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

    private func request(_ socket: String, _ line: String) throws -> String {
        let fd = try UnixSocket.connect(socket)
        defer { close(fd) }
        try UnixSocket.send(fd, line + "\n")
        return try UnixSocket.readLine(fd, timeout: 60)
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

    @Test func restoredGuestKeepsWritingFilesAndReachingTheHost() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"))
        let scratch = try TestEnvironment.freshDirectory("vireo-workload")
        defer { try? FileManager.default.removeItem(at: scratch) }
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
        let cmdline = "console=ttyS0 panic=-1 ip=dhcp root=/dev/vda rw init=/loop-init vireo_gw=\(gateway) vireo_port=\(listener.port)"
        let api = path("api.sock")
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", kernel, "--memory", "256M", "--cmdline", cmdline, "--disk", disk, "--net", "user",
            "--api-socket", api, "--no-stdin",
        ])
        defer { guest.stop() }
        #expect(guest.waitForOutput("VIREO-LOOP 10 ", timeout: 120), "output: \(guest.output.suffix(3000)) \(guest.errorOutput)")
        #expect(collector.wait(after: -1, timeout: 30) != nil, "the booted guest reaches the host server")

        // Snapshot while the loop runs, then end that VM: the restore is the only one using the disk.
        #expect(try request(api, "pause").contains("paused"))
        let snapshot = path("snap")
        let reply = try request(api, "snapshot \(snapshot)")
        #expect(reply.contains("\"ok\":true"), "snapshot: \(reply)")
        let before = SnapshotWorkloadTests.loops(guest.output)
        let last = try #require(before.last, "no loop line before the snapshot")
        _ = try? request(api, "kill")
        _ = guest.waitForExit(timeout: 20)

        let restored = try GuestProcess(arguments: ["run", "--restore", snapshot, "--api-socket", path("api2.sock"), "--no-stdin"])
        defer { restored.stop() }
        #expect(restored.waitForOutput("VIREO-LOOP \(last.index + 20) ", timeout: 60),
                "restored output: \(restored.output.suffix(2000)) \(restored.errorOutput)")
        let after = SnapshotWorkloadTests.loops(restored.output)
        #expect(!restored.output.contains("Linux version"), "a restore continues, it does not boot")
        // The file holds the lines of both runs: every loop reads back one line per iteration so far.
        let recent = Array(after.suffix(5))
        for loop in recent {
            #expect(loop.lines >= loop.index + 1, "line count \(loop.lines) at iteration \(loop.index)")
        }
        #expect(!recent.isEmpty && recent.allSatisfy { $0.tcp }, "TCP to the host after restore: \(recent)")
        #expect(collector.wait(after: last.index, timeout: 30) != nil, "the host server hears the restored guest")
        _ = try? request(path("api2.sock"), "stop")
        _ = restored.waitForExit(timeout: 30)
        TestEnvironment.log("workload restore: snapshot at iteration \(last.index), restored guest reached \(after.last?.index ?? -1)")
    }
}
