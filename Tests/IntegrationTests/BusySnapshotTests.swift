import Foundation
import Testing

/// Issue 11: a busy Linux guest — O_DIRECT block writes it verifies byte for byte, a TCP stream
/// through `--net user`, a vsock stream to the host, the balloon inflating — is snapshotted several times while it works
/// (pause → snapshot → copy the disk → resume); every snapshot then restores on its own disk copy,
/// and the restored guest verifies every block written before the snapshot and keeps both streams
/// going (reconnecting the vsock stream, whose host end was the old process); two clones of the
/// last snapshot then run side by side on copy-on-write overlays, each with its balloon at the target.
@Suite(.enabled { try TestEnvironment.available("BusySnapshotTests", .kvm, .kernel) })
struct BusySnapshotTests {
    /// `BUSY i verified=N bad=B tcp=ok|fail vsock=ok|fail` per iteration; block i of /dev/vdb holds pattern(i).
    static let initSource = #"""
    #define _GNU_SOURCE
    #include <arpa/inet.h>
    #include <fcntl.h>
    #include <linux/vm_sockets.h>
    #include <netinet/in.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mount.h>
    #include <sys/socket.h>
    #include <unistd.h>

    static void fill(unsigned char *b, int block) {
        for (int j = 0; j < 4096; j++) b[j] = (unsigned char)(block * 131 + j * 7 + (j >> 8));
    }

    static int reconnect(int fd, int family, void *address, socklen_t length) {
        if (fd >= 0) return fd;
        fd = socket(family, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, address, length) != 0) { close(fd); fd = -1; }
        return fd;
    }

    static int send_line(int *fd, const char *text) {
        int length = strlen(text);
        if (*fd < 0) return 0;
        if (write(*fd, text, length) != length) { close(*fd); *fd = -1; return 0; }
        return 1;
    }

    int main(void) {
        mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
        const char *gateway = getenv("vireo_gw"), *port = getenv("vireo_port"), *vport = getenv("vireo_vport");
        int disk = open("/dev/vdb", O_RDWR | O_DIRECT);
        unsigned char *block, *check;
        posix_memalign((void **)&block, 4096, 4096);
        posix_memalign((void **)&check, 4096, 4096);
        struct sockaddr_in tcp_address = { .sin_family = AF_INET, .sin_port = htons(atoi(port ? port : "0")) };
        inet_pton(AF_INET, gateway ? gateway : "0.0.0.0", &tcp_address.sin_addr);
        struct sockaddr_vm vsock_address = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = atoi(vport ? vport : "0") };
        int tcp = -1, vs = -1;
        for (int i = 0; i < 4096; i++) {
            fill(block, i);
            if (disk >= 0 && pwrite(disk, block, 4096, (off_t)i * 4096) == 4096) fdatasync(disk);
            int verified = 0, bad = 0;
            for (int b = 0; b <= i && disk >= 0; b++) {
                fill(block, b);
                if (pread(disk, check, 4096, (off_t)b * 4096) == 4096 && memcmp(block, check, 4096) == 0) verified++; else bad++;
            }
            char text[160];
            snprintf(text, sizeof text, "tcp %d\n", i);
            tcp = reconnect(tcp, AF_INET, &tcp_address, sizeof tcp_address);
            int tcp_ok = send_line(&tcp, text);
            if (tcp >= 0) { close(tcp); tcp = -1; }  /* a connection per line: a restored guest meets a new passt */
            snprintf(text, sizeof text, "vsock %d\n", i);
            vs = reconnect(vs, AF_VSOCK, &vsock_address, sizeof vsock_address);
            int vsock_ok = send_line(&vs, text);
            int length = snprintf(text, sizeof text, "BUSY %d verified=%d bad=%d tcp=%s vsock=%s\n", i, verified, bad,
                                  tcp_ok ? "ok" : "fail", vsock_ok ? "ok" : "fail");
            write(1, text, length);
            usleep(50000);
        }
        return 0;
    }
    """#

    struct Loop { var index: Int; var verified: Int; var bad: Int; var tcp: Bool; var vsock: Bool }

    static func loops(_ output: String) -> [Loop] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 6, words[0] == "BUSY", let index = Int(words[1]),
                  let verified = Int(words[2].dropFirst(9)), let bad = Int(words[3].dropFirst(4)) else { return nil }
            return Loop(index: index, verified: verified, bad: bad, tcp: words[4] == "tcp=ok", vsock: words[5] == "vsock=ok")
        }
    }

    /// Reads every line of every connection to `listener`; keeps the highest index per prefix.
    final class StreamSink: @unchecked Sendable {
        private let lock = NSLock()
        private var highest: [String: Int] = [:]
        private var counts: [String: Int] = [:]
        private var stopped = false

        init(_ listener: Int32) {
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                    guard poll(&poller, 1, 500) > 0 else { continue }
                    let client = accept(listener, nil, nil)
                    guard client >= 0 else { continue }
                    Thread.detachNewThread { [self] in read(client) }
                }
            }
        }

        private func read(_ client: Int32) {
            defer { close(client) }
            var pending = Data()
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !lock.withLock({ stopped }) {
                let count = recv(client, &buffer, buffer.count, 0)
                if count <= 0 { return }
                pending.append(contentsOf: buffer[0..<count])
                while let newline = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    let words = line.split(separator: " ")
                    if words.count == 2, let index = Int(words[1]) {
                        let kind = String(words[0])
                        lock.withLock { highest[kind] = max(highest[kind] ?? -1, index); counts[kind, default: 0] += 1 }
                    }
                }
            }
        }

        func stop() { lock.withLock { stopped = true } }
        func highest(_ kind: String) -> Int { lock.withLock { highest[kind] ?? -1 } }
        func count(_ kind: String) -> Int { lock.withLock { counts[kind] ?? 0 } }

        /// Waits until `more` further lines of `kind` arrived after `count` had.
        func wait(_ kind: String, moreThan count: Int, by more: Int, timeout: Double) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if self.count(kind) >= count + more { return true }
                usleep(100_000)
            }
            return false
        }

        func wait(_ kind: String, above: Int, timeout: Double) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if highest(kind) > above { return true }
                usleep(100_000)
            }
            return false
        }
    }

    static func waitForLoop(_ output: () -> String, atLeast index: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if loops(output()).contains(where: { $0.index >= index }) { return true }
            usleep(200_000)
        }
        return false
    }

    @Test func busyGuestSnapshotsRestoreAndVerifyTheirBytes() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"))
        let hardware = TestEnvironment.host == .hardware
        let scratch = try TestEnvironment.freshDirectory("vireo-busy-snapshots")
        defer { try? FileManager.default.removeItem(at: scratch) }
        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        let root = path("root")
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try BusySnapshotTests.initSource.write(toFile: path("busy.c"), atomically: true, encoding: .utf8)
        let gcc = try DeviceBootTests.run("/usr/bin/gcc", ["-static", "-O2", "-o", root + "/busy-init", path("busy.c")])
        try #require(gcc.status == 0, "gcc -static: \(gcc.output)")
        let rootDisk = path("root.img"), dataDisk = path("data.img")
        let mkfs = try DeviceBootTests.run("/sbin/mkfs.ext4", ["-q", "-d", root, rootDisk, "16M"])
        try #require(mkfs.status == 0, "mkfs.ext4: \(mkfs.output)")
        FileManager.default.createFile(atPath: dataDisk, contents: nil)
        try #require(truncate(dataDisk, 16 << 20) == 0)

        let tcp = try TCPListener()
        let sink = StreamSink(tcp.fd)
        defer { sink.stop() }
        let vsockPort = 7000
        let gateway = try #require(DeviceBootTests.hostNetwork()?.gateway, "no default route: passt needs one")
        let cmdline = "console=ttyS0 panic=-1 lpj=1000000 ip=dhcp root=/dev/vda rw init=/busy-init vireo_gw=\(gateway) vireo_port=\(tcp.port) vireo_vport=\(vsockPort)"

        let vsockBase = path("v.sock")
        let vsockSink = StreamSink(try UnixSocket.listen("\(vsockBase)_\(vsockPort)"))
        defer { vsockSink.stop() }
        let api = path("api.sock")
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "256M", "--cmdline", cmdline, "--no-stdin",
                                                 "--disk", rootDisk, "--disk", dataDisk, "--net", "user", "--balloon",
                                                 "--vsock", "cid=3,socket=\(vsockBase)", "--api-socket", api])
        defer { guest.stop() }
        #expect(BusySnapshotTests.waitForLoop({ guest.output }, atLeast: 3, timeout: hardware ? 120 : 400),
                "console: \(guest.output.suffix(3000)) \(guest.errorOutput)")
        // Balloon activity too: the driver inflates while the snapshots below are taken.
        let balloonMiB = 48
        #expect(try UnixSocket.request(api, "balloon \(balloonMiB)", timeout: 120).contains("\"ok\":true"))

        // Five snapshots while it works; each pauses, snapshots, copies both disks, resumes.
        var taken: [(directory: String, root: String, data: String, index: Int)] = []
        for number in 1...5 {
            let directory = path("snap\(number)")
            #expect(try UnixSocket.request(api, "pause", timeout: 120).contains("\"state\":\"paused\""))
            let reply = try UnixSocket.request(api, "snapshot \(directory)", timeout: 120)
            #expect(reply.contains("\"ok\":true"), "snapshot \(number): \(reply)")
            let rootCopy = path("root\(number).img"), dataCopy = path("data\(number).img")
            try FileManager.default.copyItem(atPath: rootDisk, toPath: rootCopy)
            try FileManager.default.copyItem(atPath: dataDisk, toPath: dataCopy)
            let index = BusySnapshotTests.loops(guest.output).last?.index ?? -1
            taken.append((directory, rootCopy, dataCopy, index))
            #expect(try UnixSocket.request(api, "resume", timeout: 120).contains("\"state\":\"running\""))
            #expect(BusySnapshotTests.waitForLoop({ guest.output }, atLeast: index + 2, timeout: hardware ? 60 : 300),
                    "the guest keeps working after snapshot \(number)")
        }
        let before = BusySnapshotTests.loops(guest.output)
        #expect(before.allSatisfy { $0.bad == 0 && $0.verified == $0.index + 1 }, "the original guest verified its blocks")
        #expect(sink.highest("tcp") >= 0 && vsockSink.highest("vsock") >= 0, "both streams reached the host")
        _ = try? UnixSocket.request(api, "kill", timeout: 120)
        _ = guest.waitForExit(timeout: 10)

        // Each snapshot restores on its own copies; the restored guest verifies every block written
        // before the snapshot, and its streams go on (vsock reconnects to the new process's socket).
        for (number, snapshot) in taken.enumerated() {
            let base = path("rv\(number).sock")
            let restoredSink = StreamSink(try UnixSocket.listen("\(base)_\(vsockPort)"))
            defer { restoredSink.stop() }
            let tcpBefore = sink.count("tcp")
            let restored = try GuestProcess(arguments: ["run", "--restore", snapshot.directory, "--no-stdin",
                                                        "--disk", snapshot.root, "--disk", snapshot.data,
                                                        "--balloon", "--vsock", "cid=3,socket=\(base)"])
            defer { restored.stop() }
            let ahead = snapshot.index + 3
            #expect(BusySnapshotTests.waitForLoop({ restored.output }, atLeast: ahead, timeout: hardware ? 60 : 300),
                    "snapshot \(number + 1): \(restored.output.suffix(1500)) \(restored.errorOutput)")
            let after = BusySnapshotTests.loops(restored.output)
            #expect(after.first.map { $0.index <= snapshot.index + 2 } == true, "continues from iteration \(snapshot.index)")
            for loop in after {
                #expect(loop.bad == 0 && loop.verified == loop.index + 1,
                        "snapshot \(number + 1): iteration \(loop.index) verified \(loop.verified), bad \(loop.bad)")
            }
            #expect(restoredSink.wait("vsock", above: snapshot.index, timeout: 60), "snapshot \(number + 1): the vsock stream reconnects")
            #expect(sink.wait("tcp", moreThan: tcpBefore, by: 2, timeout: 60),
                    "snapshot \(number + 1): the TCP stream goes on through the new passt")
            TestEnvironment.log("busy snapshot \(number + 1): taken at iteration \(snapshot.index), restored guest reached \(after.last?.index ?? -1)")
            kill(restored.process.processIdentifier, SIGKILL)
            _ = restored.waitForExit(timeout: 10)
        }

        // Two clones of the last snapshot side by side, each on copy-on-write overlays over its disk
        // copies (never written): both verify the blocks and keep writing their own.
        let last = try #require(taken.last)
        var clones: [(GuestProcess, StreamSink)] = []
        defer { for (clone, cloneSink) in clones { clone.stop(); cloneSink.stop() } }
        for name in ["a", "b"] {
            let base = path("clone-\(name).sock")
            let cloneSink = StreamSink(try UnixSocket.listen("\(base)_\(vsockPort)"))
            let clone = try GuestProcess(arguments: ["run", "--restore", last.directory, "--no-stdin",
                                                     "--disk", "\(path("clone-\(name)-root.ovl")),backing=\(last.root)",
                                                     "--disk", "\(path("clone-\(name)-data.ovl")),backing=\(last.data)",
                                                     "--balloon", "--vsock", "cid=3,socket=\(base)", "--api-socket", path("clone-\(name).api")])
            clones.append((clone, cloneSink))
        }
        for (name, (clone, cloneSink)) in zip(["a", "b"], clones) {
            #expect(BusySnapshotTests.waitForLoop({ clone.output }, atLeast: last.index + 3, timeout: hardware ? 60 : 300),
                    "clone \(name): \(clone.output.suffix(1500)) \(clone.errorOutput)")
            let loops = BusySnapshotTests.loops(clone.output)
            #expect(!loops.isEmpty && loops.allSatisfy { $0.bad == 0 && $0.verified == $0.index + 1 }, "clone \(name) verifies its blocks")
            #expect(cloneSink.wait("vsock", above: last.index, timeout: 60), "clone \(name): its vsock stream reconnects")
            // The balloon restored with the guest's driver: the clone's balloon reaches the target the
            // original set (whether inflation was done at the snapshot or goes on after the restore).
            var actual = -1
            let deadline = Date().addingTimeInterval(hardware ? 60 : 300)
            while Date() < deadline {
                let reply = (try? UnixSocket.request(path("clone-\(name).api"), "status", timeout: 60)) ?? ""
                let status = (try? JSONSerialization.jsonObject(with: Data(reply.utf8))) as? [String: Any]
                let balloon = (status?["devices"] as? [String: Any])?["balloon"] as? [String: Any]
                actual = balloon?["actual_pages"] as? Int ?? -1
                if actual == balloonMiB * 256 { break }
                usleep(500_000)
            }
            #expect(actual == balloonMiB * 256, "clone \(name): balloon at \(actual) pages, target \(balloonMiB * 256)")
        }
    }
}
