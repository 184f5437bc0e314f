import Foundation
import Testing

/// One Linux boot with every virtio device Vireo has — `--net user --balloon --rng --disk <ext4>
/// --vsock … --virtio-console …` — asserting what the guest kernel does with them by itself:
///
/// - virtio-net: the kernel's `ip=dhcp` gets its address from passt (passt hands out the host's own
///   address and gateway) and prints `IP-Config: Complete:`; passt runs while the VM runs and is gone after;
/// - virtio-blk: `root=/dev/vda rw` mounts the ext4 image made with `mkfs.ext4 -d`; afterwards the
///   host sees the superblock's mount count and last mount time updated (dumpe2fs -h);
/// - virtio-rng: the hwrng core reads entropy (byte count in the control socket's `status`);
/// - virtio-vsock: a host client's `CONNECT 1234` reaches the guest kernel, which has no listener
///   there and answers RST: the client is closed without `OK`;
/// - virtio-balloon: once the driver reports the guest's free memory, `balloon <MiB>` over the control
///   socket inflates the balloon by nearly all of it, and the VMM's RSS drops. The initrd is 24 MiB of
///   random bytes: Vireo writes it into guest RAM (so it is resident), the kernel rejects it as an
///   initramfs and frees it — touched, free guest memory the balloon must take back;
/// - virtio-console: hvc0 is a second kernel console, written to a file.
///
/// Init is `/spin` on the ext4 disk, a 122-byte static ELF that loops in user mode without system
/// calls: on PVM hosts guest user space cannot make system calls (shared/docs/host-kvm.md), and a
/// spinning init keeps the kernel alive (timers, workqueues, the balloon) instead of panicking. On
/// hardware hosts init is a small C program (built here with gcc -static) that also exercises user
/// space: a guest-initiated vsock connection to the host, a vsock echo server for a host-initiated
/// one, and TCP through passt to a listener on the host. The VM is stopped over the control socket.
@Suite(.enabled { try TestEnvironment.available("DeviceBootTests", .kvm, .kernel, .initramfs) },
       .serialized)
struct DeviceBootTests {
    static let cid = 7

    @Test func linuxUsesEveryVirtioDevice() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
        let hardware = TestEnvironment.host == .hardware
        let scratch = try TestEnvironment.freshDirectory("vireo-devices")
        defer { try? FileManager.default.removeItem(at: scratch) }
        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        // The root file system: /spin, /dev (devtmpfs is mounted there), and on hardware /vireo-init.
        let root = path("root")
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try Data(DeviceBootTests.spinELF).write(to: URL(fileURLWithPath: root + "/spin"))
        chmod(root + "/spin", 0o755)
        try Data("written on the host\n".utf8).write(to: URL(fileURLWithPath: root + "/hello.txt"))
        var initProgram = "/spin"
        if hardware {
            if DeviceBootTests.compileGuestInit(into: root + "/vireo-init", scratch: scratch.path) {
                initProgram = "/vireo-init"
            } else {
                TestEnvironment.log("no static C toolchain: hardware host runs /spin, user-space checks skipped")
            }
        }
        let disk = path("disk.img")
        let mkfs = try DeviceBootTests.run("/sbin/mkfs.ext4", ["-q", "-d", root, disk, "16M"])
        try #require(mkfs.status == 0, "mkfs.ext4 -d failed: \(mkfs.output)")
        #expect(try DeviceBootTests.superblock(disk)["Mount count"] == "0")

        var initrd = [UInt8](repeating: 0, count: 24 << 20)
        arc4random_buf(&initrd, initrd.count)
        initrd[0] = 1  // neither a cpio magic nor a zero the unpacker would skip byte by byte
        try Data(initrd).write(to: URL(fileURLWithPath: path("initrd.bin")))

        let api = path("api.sock"), vsock = path("v.sock"), hvc = path("hvc0.log")
        let tcp = hardware ? try TCPListener() : nil
        let guestListener = hardware ? try VsockHostListener(path: "\(vsock)_6000") : nil
        let network = DeviceBootTests.hostNetwork()
        var cmdline = "console=hvc0 console=ttyS0 panic=-1 lpj=1000000 ip=dhcp rdinit=/vireo-no-initramfs root=/dev/vda rw init=\(initProgram)"
        if let tcp, let gateway = network?.gateway { cmdline += " vireo_gw=\(gateway) vireo_port=\(tcp.port)" }
        TestEnvironment.log("device boot on \(TestEnvironment.host): init \(initProgram)")
        let started = Date()
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", kernel, "--initrd", path("initrd.bin"), "--memory", "64M", "--cmdline", cmdline,
            "--net", "user", "--rng", "--balloon", "--disk", disk, "--vsock", "cid=\(DeviceBootTests.cid),socket=\(vsock)",
            "--virtio-console", "file=\(hvc)", "--api-socket", api, "--no-stdin",
        ])
        defer { guest.stop() }
        let vmm = guest.process.processIdentifier

        let reachedInit = guest.waitForOutput("Run \(initProgram) as init process", timeout: 500)
        try #require(reachedInit, "init did not start. Output: \(guest.output.suffix(4000)) stderr: \(guest.errorOutput)")
        TestEnvironment.log("init after \(Int(Date().timeIntervalSince(started))) s")
        let output = guest.output
        let lines = output.split(separator: "\n")
        for marker in ["IP-Config: Complete:", "device=eth0", "EXT4-fs (vda): mounted", "virtio_balloon", "hwrng"] {
            if let line = lines.first(where: { $0.contains(marker) }) { TestEnvironment.log("kernel: \(line)") }
        }

        // virtio-net + passt: DHCP by the kernel itself.
        #expect(output.contains("IP-Config: Complete:"), "output: \(output.suffix(3000))")
        #expect(output.contains("device=eth0, hwaddr=52:54:00:12:34:56"))
        if let network {
            #expect(output.contains("ipaddr=\(network.address),"), "passt hands out the host's address \(network.address)")
            #expect(output.contains("gw=\(network.gateway)"))
        }
        #expect(output.contains("mtu=1500"), "the MTU passt announces is the NIC's")
        let passt = DeviceBootTests.children(of: vmm).filter { $0.name.hasPrefix("passt") }
        #expect(passt.count == 1, "one passt child while the VM runs: \(passt)")

        // virtio-blk: the ext4 root.
        #expect(output.contains("EXT4-fs (vda): mounted filesystem"))
        #expect(output.contains("VFS: Mounted root (ext4 filesystem)"))

        // Counters from the control socket.
        var status = try statusDevices(api)
        let rng = status["rng"] as? [String: Any]
        #expect((rng?["bytes"] as? Int ?? 0) > 0, "the hwrng core read entropy: \(status)")
        let nets = status["net"] as? [[String: Any]] ?? []
        #expect(nets.count == 1 && (nets.first?["rx_packets"] as? Int ?? 0) >= 2 && (nets.first?["tx_packets"] as? Int ?? 0) >= 2,
                "DHCP went both ways: \(nets)")
        #expect((status["vsock"] as? [String: Any])?["active"] as? Bool == true)

        // virtio-vsock: the guest kernel answers a CONNECT to a port nobody listens on with RST.
        let refused = try VsockClient.connect(vsock, port: 1234, timeout: 60)
        #expect(refused == nil, "no listener on guest port 1234: closed without OK, got \(String(describing: refused))")
        status = try statusDevices(api)
        #expect(((status["vsock"] as? [String: Any])?["resets_received"] as? Int ?? 0) >= 1)

        // virtio-balloon: wait for the driver's first statistics, then take nearly all free memory.
        var free = 0
        let statsDeadline = Date().addingTimeInterval(120)
        while Date() < statsDeadline {
            let balloon = try statusDevices(api)["balloon"] as? [String: Any]
            free = (balloon?["stats"] as? [String: Any])?["free_memory"] as? Int ?? 0
            if free > 0 { break }
            usleep(500_000)
        }
        #expect(free > 16 << 20, "the balloon driver reported the guest's free memory")
        if free > 16 << 20 {
            let targetMiB = free >> 20 - 4
            let before = DeviceBootTests.residentKiB(vmm)
            let reply = try request(api, "balloon \(targetMiB)")
            #expect(reply.contains("\"ok\":true"), "balloon: \(reply)")
            let inflateStarted = Date()
            var balloon: [String: Any] = [:]
            while Date().timeIntervalSince(inflateStarted) < 400 {
                balloon = try statusDevices(api)["balloon"] as? [String: Any] ?? [:]
                if balloon["actual_pages"] as? Int == targetMiB * 256 { break }
                usleep(500_000)
            }
            let after = DeviceBootTests.residentKiB(vmm)
            TestEnvironment.log("balloon: \(targetMiB) MiB inflated in \(Int(Date().timeIntervalSince(inflateStarted))) s; VMM RSS \(before) KiB → \(after) KiB")
            #expect(balloon["actual_pages"] as? Int == targetMiB * 256, "the driver inflated to the target: \(balloon)")
            #expect(balloon["released_pages"] as? Int == targetMiB * 256, "every inflated page was released on the host: \(balloon)")
            #expect(before - after >= 8 * 1024, "RSS dropped by at least 8 MiB: \(before) KiB → \(after) KiB")
        }

        // User space (hardware hosts only): vsock both ways and TCP through passt.
        if initProgram == "/vireo-init", let tcp, let guestListener {
            #expect(guestListener.acceptLine(timeout: 60) == "vsock hello from guest", "guest-initiated vsock")
            #expect(tcp.acceptLine(timeout: 60) == "tcp hello from guest", "guest TCP through passt to the host")
            let echoed = try VsockClient.exchange(vsock, port: 5000, message: "echo me\n", timeout: 60)
            #expect(echoed == "echo me\n", "host-initiated vsock to the guest's echo server")
        }

        // Stop over the control socket: exit 0, passt gone, socket files removed, superblock updated.
        _ = try? request(api, "stop")
        let exitStatus = guest.waitForExit(timeout: 60)
        #expect(exitStatus == 0, "stderr: \(guest.errorOutput)")
        for child in passt { #expect(kill(child.pid, 0) != 0, "passt \(child.pid) stopped with the VM") }
        #expect(!FileManager.default.fileExists(atPath: vsock), "the vsock socket is removed")
        let superblock = try DeviceBootTests.superblock(disk)
        #expect(superblock["Mount count"] == "1", "\(superblock)")
        #expect(superblock["Last mount time"].map { $0 != "n/a" } == true, "\(superblock)")
        let console = (try? String(contentsOfFile: hvc, encoding: .utf8)) ?? ""
        #expect(console.contains("Run \(initProgram) as init process"), "hvc0 carried the kernel console: \(console.suffix(500))")
        TestEnvironment.log("device boot done after \(Int(Date().timeIntervalSince(started))) s")
    }

    // MARK: control socket

    private func request(_ socket: String, _ line: String) throws -> String {
        let fd = try UnixSocket.connect(socket)
        defer { close(fd) }
        try UnixSocket.send(fd, line + "\n")
        return try UnixSocket.readLine(fd, timeout: 60)
    }

    private func statusDevices(_ socket: String) throws -> [String: Any] {
        let reply = try request(socket, "status")
        let object = try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any]
        return object?["devices"] as? [String: Any] ?? [:]
    }

    // MARK: host facts

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `dumpe2fs -h` as key → value.
    static func superblock(_ image: String) throws -> [String: String] {
        let result = try run("/sbin/dumpe2fs", ["-h", image])
        var fields: [String: String] = [:]
        for line in result.output.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// The host's default gateway and its address on that interface: what passt hands the guest.
    static func hostNetwork() -> (address: String, gateway: String)? {
        guard let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
              let route = try? run(ip, ["-4", "route", "show", "default"]) else { return nil }
        let words = route.output.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        guard let via = words.firstIndex(of: "via"), let dev = words.firstIndex(of: "dev"), via + 1 < words.count, dev + 1 < words.count,
              let addr = try? run(ip, ["-4", "-o", "addr", "show", "dev", words[dev + 1]]) else { return nil }
        let fields = addr.output.split(separator: " ").map(String.init)
        guard let inet = fields.firstIndex(of: "inet"), inet + 1 < fields.count else { return nil }
        return (String(fields[inet + 1].split(separator: "/")[0]), words[via + 1])
    }

    static func residentKiB(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    static func children(of parent: Int32) -> [(pid: Int32, name: String)] {
        var result: [(Int32, String)] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            if rest.count > 1, Int32(rest[1]) == parent { result.append((pid, String(stat[stat.index(after: open)..<close]))) }
        }
        return result
    }

    // MARK: guest programs

    /// A static x86-64 ELF whose only instruction is `jmp .` (no system calls).
    static var spinELF: [UInt8] {
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        let base: UInt64 = 0x40_0000, code: [UInt8] = [0xEB, 0xFE]
        let fileSize = UInt64(64 + 56 + code.count)
        var elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        elf += le(UInt16(2)) + le(UInt16(0x3E)) + le(UInt32(1)) + le(base + 120) + le(UInt64(64)) + le(UInt64(0))
        elf += le(UInt32(0)) + le(UInt16(64)) + le(UInt16(56)) + le(UInt16(1)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
        elf += le(UInt32(1)) + le(UInt32(5)) + le(UInt64(0)) + le(base) + le(base) + le(fileSize) + le(fileSize) + le(UInt64(0x1000))
        return elf + code
    }

    /// The hardware hosts' init: vsock out to the host, TCP out through passt, a vsock echo server.
    static let guestInitSource = #"""
    #include <arpa/inet.h>
    #include <linux/vm_sockets.h>
    #include <netinet/in.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/socket.h>
    #include <unistd.h>

    static void say(const char *text) { write(1, text, strlen(text)); }

    int main(void) {
        say("VIREO-GUEST init\n");
        int v = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm host = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = 6000 };
        if (v >= 0 && connect(v, (struct sockaddr *)&host, sizeof host) == 0) {
            write(v, "vsock hello from guest\n", 23);
            say("VIREO-GUEST vsock out ok\n");
        }
        close(v);
        const char *gateway = getenv("vireo_gw"), *port = getenv("vireo_port");
        if (gateway && port) {
            int t = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(port)) };
            inet_pton(AF_INET, gateway, &address.sin_addr);
            if (t >= 0 && connect(t, (struct sockaddr *)&address, sizeof address) == 0) {
                write(t, "tcp hello from guest\n", 21);
                say("VIREO-GUEST tcp out ok\n");
            }
            close(t);
        }
        int l = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm any = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = 5000 };
        bind(l, (struct sockaddr *)&any, sizeof any);
        listen(l, 4);
        say("VIREO-GUEST listening\n");
        for (;;) {
            int c = accept(l, 0, 0);
            if (c < 0) continue;
            char buffer[4096];
            long n;
            while ((n = read(c, buffer, sizeof buffer)) > 0) write(c, buffer, n);
            close(c);
        }
    }
    """#

    static func compileGuestInit(into output: String, scratch: String) -> Bool {
        let source = scratch + "/vireo-init.c"
        guard (try? guestInitSource.write(toFile: source, atomically: true, encoding: .utf8)) != nil,
              let result = try? run("/usr/bin/gcc", ["-static", "-O2", "-o", output, source]) else { return false }
        if result.status != 0 { TestEnvironment.log("gcc -static failed: \(result.output)") }
        return result.status == 0
    }
}

/// A TCP listener on the host's loopback (passt maps the guest's gateway address to the host).
final class TCPListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = 0  // INADDR_ANY
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw UnixSocket.Failure(description: "TCP listen failed: errno \(errno)") }
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }

    func acceptLine(timeout: Double) -> String? { acceptFirstLine(fd, timeout: timeout) }
}

/// A Unix listener standing in for a host service behind `<vsock socket>_<port>`.
final class VsockHostListener {
    let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() where index < raw.count - 1 { raw[index] = byte }
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok, listen(fd, 4) == 0 else { throw UnixSocket.Failure(description: "listen \(path): errno \(errno)") }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    func acceptLine(timeout: Double) -> String? { acceptFirstLine(fd, timeout: timeout) }
}

/// Accepts one connection within `timeout` and returns its first line.
func acceptFirstLine(_ listener: Int32, timeout: Double) -> String? {
    var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
    guard poll(&poller, 1, Int32(timeout * 1000)) > 0 else { return nil }
    let client = accept(listener, nil, nil)
    guard client >= 0 else { return nil }
    defer { close(client) }
    return try? UnixSocket.readLine(client, timeout: timeout)
}

/// Firecracker's host side of vsock: `CONNECT <port>\n`, then `OK <host port>\n`.
enum VsockClient {
    /// The `OK …` line, or nil when the connection closed without one.
    static func connect(_ socket: String, port: Int, timeout: Double) throws -> String? {
        let fd = try UnixSocket.connect(socket)
        defer { close(fd) }
        try UnixSocket.send(fd, "CONNECT \(port)\n")
        return try? UnixSocket.readLine(fd, timeout: timeout)
    }

    /// Connects, sends `message`, and returns what comes back (up to the same length).
    static func exchange(_ socket: String, port: Int, message: String, timeout: Double) throws -> String? {
        let fd = try UnixSocket.connect(socket)
        defer { close(fd) }
        try UnixSocket.send(fd, "CONNECT \(port)\n")
        guard let ok = try? UnixSocket.readLine(fd, timeout: timeout), ok.hasPrefix("OK ") else { return nil }
        try UnixSocket.send(fd, message)
        let line = try UnixSocket.readLine(fd, timeout: timeout)
        return line + "\n"
    }
}
