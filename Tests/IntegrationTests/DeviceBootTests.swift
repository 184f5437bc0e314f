import Foundation
import Testing

/// One Linux boot with every virtio device Vireo has, each exercised from guest user space by the
/// test guest's init (guest/init.c, `vireo.test=…`) and checked on the host — on every host kind
/// (PVM hosts run the guest's system calls through the test kernel's patch, docs/hosts.md):
///
/// - virtio-blk (raw): the guest checksums 1 MiB the host wrote, writes 1 MiB of a seeded pattern
///   that the host finds in the image, and times 8 MiB of direct I/O;
/// - virtio-blk (ext4): the guest mounts it, reads the host's file, writes one, syncs and unmounts;
///   the host reads the guest's file with debugfs;
/// - virtio-net + passt: busybox udhcpc leases the host's address, then 64 KiB over TCP to an echo
///   server on the host and back, checksummed on both sides, and 20 one-byte round trips;
/// - virtio-net + TAP (where root and /dev/net/tun allow, as in CI): a second NIC with a static
///   address, the same exchange with an echo server at the TAP's host end, which lives in a network
///   namespace of the test's own;
/// - virtio-vsock: guest → host (64 KiB echoed by a listener behind `<socket>_6000`) and host →
///   guest (the host connects to the guest's listener on port 5000); a CONNECT to a port nobody
///   listens on is refused;
/// - virtio-rng: 32 bytes from /dev/hwrng; virtio-balloon: the host inflates it by nearly all the
///   guest's free memory, the guest sees MemFree drop and the VMM's RSS drops (the initrd carries
///   random filler that makes freed guest memory resident on the host first);
/// - virtio-console: hvc0 is a second kernel console, written to a file.
///
/// The guest then holds, and the VM is stopped over the control socket (exit 0).
@Suite(.enabled { try TestEnvironment.available("DeviceBootTests", .kvm, .kernel, .initramfs) },
       .serialized)
struct DeviceBootTests {
    static let cid = 7
    static let seed: UInt64 = 0x5eed_1234

    @Test func linuxUsesEveryVirtioDeviceFromUserSpace() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
        let initramfs = try #require(TestEnvironment.path("VIREO_INITRAMFS"), "VIREO_INITRAMFS is not set: run scripts/test")
        let scratch = try TestEnvironment.freshDirectory("vireo-devices")
        defer { try? FileManager.default.removeItem(at: scratch) }
        func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

        // A raw disk whose first MiB the host fills, and an ext4 disk holding a file from the host.
        var hostBytes = [UInt8](repeating: 0, count: 1 << 20)
        arc4random_buf(&hostBytes, hostBytes.count)
        let raw = path("raw.img")
        try Data(hostBytes).write(to: URL(fileURLWithPath: raw))
        #expect(truncate(raw, 16 << 20) == 0)
        let root = path("root")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Data("written on the host\n".utf8).write(to: URL(fileURLWithPath: root + "/host.txt"))
        let ext4 = path("data.ext4")
        let mkfs = try DeviceBootTests.run("/sbin/mkfs.ext4", ["-q", "-d", root, ext4, "16M"])
        try #require(mkfs.status == 0, "mkfs.ext4 -d failed: \(mkfs.output)")

        // The initrd: the initramfs, then 16 MiB of random filler. Vireo writes it all into guest RAM
        // (so it is resident on the host); the kernel unpacks the archive, stops at the filler and
        // frees the whole initrd: touched, free guest memory for the balloon to take back. (Touching
        // memory from guest user space instead costs minutes on PVM hosts: every page fault zeroes a
        // page in emulated kernel mode.)
        var filler = [UInt8](repeating: 0, count: 16 << 20)
        arc4random_buf(&filler, filler.count)
        filler[0] = 1  // neither a cpio header, nor a zero the unpacker skips, nor a compressor's magic
        let initrd = path("initrd.img")
        try (Data(contentsOf: URL(fileURLWithPath: initramfs)) + Data(filler)).write(to: URL(fileURLWithPath: initrd))

        let api = path("api.sock"), vsock = path("v.sock"), hvc = path("hvc0.log")
        let tcp = try EchoServer()
        let vsockEcho = try EchoServer(unixPath: "\(vsock)_6000")
        let network = DeviceBootTests.hostNetwork()
        // A second NIC on a TAP where one can be made (root and /dev/net/tun, as in CI).
        let tap = TapNamespace.possible ? try TapNamespace() : nil
        if tap == nil {
            #expect(!TestEnvironment.requireGuests, "a strict run needs root and /dev/net/tun for the TAP check")
            TestEnvironment.log("no TAP check: needs root and /dev/net/tun")
        }
        var cmdline = "console=hvc0 console=ttyS0 panic=-1 lpj=1000000 vireo.test=rng,blk,ext4,net\(tap == nil ? "" : ",tap"),vsock,balloon "
            + "vireo.blk=vda vireo.ext4=vdb vireo.seed=\(DeviceBootTests.seed) vireo.port=\(tcp.port) vireo.balloon=16 vireo.hold"
        if let tap {
            cmdline += " vireo.tap=eth1,\(TapNamespace.guestAddress),\(TapNamespace.netmask),\(TapNamespace.hostAddress):\(TapNamespace.echoPort)"
        }
        TestEnvironment.log("device boot on \(TestEnvironment.host)")
        let started = Date()
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", kernel, "--initrd", initrd, "--memory", "96M", "--cmdline", cmdline,
            "--net", "user", "--rng", "--balloon", "--disk", raw, "--disk", ext4,
            "--vsock", "cid=\(DeviceBootTests.cid),socket=\(vsock)",
            "--virtio-console", "file=\(hvc)", "--api-socket", api, "--no-stdin",
        ] + (tap.map { ["--net", "tap=\($0.tap)"] } ?? []))
        defer { guest.stop() }
        let vmm = guest.process.processIdentifier

        try #require(guest.waitForOutput("VIREO-INIT-OK", timeout: 500),
                     "init did not start. Output: \(guest.output.suffix(4000)) stderr: \(guest.errorOutput)")
        TestEnvironment.log("init after \(Int(Date().timeIntervalSince(started))) s")
        // The VMM holds the TAP by now: its host end moves into the test's namespace.
        try tap?.moveAndServe()

        // While the guest works: a CONNECT to a guest port nobody listens on is refused (RST).
        let refused = try VsockClient.connect(vsock, port: 1234, timeout: 60)
        #expect(refused == nil, "no listener on guest port 1234: closed without OK, got \(String(describing: refused))")

        // Host → guest vsock, once the guest listens: what the host sends comes back.
        try #require(guest.waitForOutput("VIREO-VSOCK listening", timeout: 300),
                     "guest output: \(guest.output.suffix(3000)) stderr: \(guest.errorOutput)")
        let message = String(repeating: "host to guest over vsock\n", count: 40)
        let echoed = try VsockClient.exchange(vsock, port: 5000, message: message, timeout: 60)
        #expect(echoed == message, "host-initiated vsock to the guest's echo server")

        // Balloon: once the guest is ready, take all but 8 MiB of its free memory. Whatever pages the
        // driver picks, that includes most of the freed initrd, which was resident on the host.
        let ready = try #require(guest.waitForLine("VIREO-BALLOON ready", timeout: 120), "output: \(guest.output.suffix(2000))")
        let freeKiB = Int(GuestChecks.result(ready, "VIREO-BALLOON ready")?["free_kb"] ?? "") ?? 0
        #expect(freeKiB > 48 << 10, "the guest reports its free memory: \(freeKiB) KiB")
        let rssBefore = DeviceBootTests.residentKiB(vmm)
        let targetMiB = max(16, freeKiB / 1024 - 8)
        #expect(try UnixSocket.request(api, "balloon \(targetMiB)").contains("\"ok\":true"))
        var balloon: [String: Any] = [:]
        let inflateStarted = Date()
        while Date().timeIntervalSince(inflateStarted) < 300 {
            balloon = try statusDevices(api)["balloon"] as? [String: Any] ?? [:]
            if balloon["actual_pages"] as? Int == targetMiB * 256 { break }
            usleep(500_000)
        }
        let rssAfter = DeviceBootTests.residentKiB(vmm)
        TestEnvironment.log("balloon: \(targetMiB) MiB in \(Int(Date().timeIntervalSince(inflateStarted))) s; VMM RSS \(rssBefore) → \(rssAfter) KiB")
        #expect(balloon["actual_pages"] as? Int == targetMiB * 256, "the driver inflated to the target: \(balloon)")
        #expect(balloon["released_pages"] as? Int == targetMiB * 256, "every inflated page was released on the host: \(balloon)")
        #expect(rssBefore - rssAfter >= 8 * 1024, "RSS dropped by at least 8 MiB: \(rssBefore) → \(rssAfter) KiB")
        let status = try statusDevices(api)
        let nets = status["net"] as? [[String: Any]] ?? []
        #expect((nets.first?["rx_packets"] as? Int ?? 0) >= 40 && (nets.first?["tx_packets"] as? Int ?? 0) >= 40,
                "DHCP and TCP went both ways: \(nets)")
        let passt = DeviceBootTests.children(of: vmm).filter { $0.name.hasPrefix("passt") }
        #expect(passt.count == 1, "one passt child while the VM runs: \(passt)")

        // The guest finishes its checks and holds; stopped over the control socket: exit 0.
        #expect(guest.waitForOutput("VIREO-HOLD", timeout: 300), "output: \(guest.output.suffix(3000))")
        _ = try? UnixSocket.request(api, "stop")
        let exitStatus = guest.waitForExit(timeout: 60)
        let output = guest.output
        TestEnvironment.log("device boot done after \(Int(Date().timeIntervalSince(started))) s")
        for line in output.split(whereSeparator: \.isNewline) where line.hasPrefix("VIREO-") { TestEnvironment.log("guest: \(line)") }
        #expect(exitStatus == 0, "stderr: \(guest.errorOutput)")
        #expect(GuestChecks.failures(output).isEmpty, "failed checks: \(GuestChecks.failures(output))")

        // rng: bytes from /dev/hwrng, and the device counted them.
        let rng = GuestChecks.result(output, "VIREO-RNG ok")
        #expect(rng?["bytes"].map { $0.count == 64 && $0 != String(repeating: "0", count: 64) } == true, "\(String(describing: rng))")
        #expect(((status["rng"] as? [String: Any])?["bytes"] as? Int ?? 0) >= 32, "the rng device served the guest: \(status)")

        // blk: the guest read the host's bytes, and its pattern is in the image at 1 MiB.
        let blk = GuestChecks.result(output, "VIREO-BLK ok")
        #expect(blk?["read_fnv"] == GuestChecks.hex(GuestChecks.fnv(hostBytes)), "guest read what the host wrote: \(String(describing: blk))")
        let image = try Data(contentsOf: URL(fileURLWithPath: raw))
        let expected = GuestChecks.pattern(count: 1 << 20, seed: DeviceBootTests.seed)
        #expect(image.count == 16 << 20 && Array(image[(1 << 20)..<(2 << 20)]) == expected, "the guest's pattern is in the image")
        #expect(blk?["wrote_fnv"] == GuestChecks.hex(GuestChecks.fnv(expected)))
        #expect(GuestChecks.result(output, "VIREO-BLK-BENCH direct")?["write_mbps"] != nil)

        // ext4: the host's file read in the guest, the guest's file read on the host.
        #expect(GuestChecks.result(output, "VIREO-EXT4 ok")?["host.txt"] == "written on the host")
        let guestFile = try DeviceBootTests.run("/sbin/debugfs", ["-R", "cat /guest.txt", ext4])
        #expect(guestFile.output.contains("written by the guest, seed \(DeviceBootTests.seed)"), "debugfs: \(guestFile.output)")

        // net: DHCP from user space (passt leases the host's own address), TCP both ways.
        let dhcp = GuestChecks.result(output, "VIREO-NET dhcp")
        if let network { #expect(dhcp?["ip"] == network.address && dhcp?["router"] == network.gateway, "\(String(describing: dhcp))") }
        let tcpPattern = GuestChecks.pattern(count: 65536, seed: DeviceBootTests.seed + 1)
        #expect(GuestChecks.result(output, "VIREO-NET tcp ok")?["fnv"] == GuestChecks.hex(GuestChecks.fnv(tcpPattern)))
        #expect(tcp.received.contains { $0.bytes == 65556 && $0.fnv == GuestChecks.fnv(tcpPattern + (0..<20).map { UInt8($0) }) },
                "the host received the guest's bytes: \(tcp.received)")

        // TAP: a static address on the second NIC, the same exchange with the namespace's echo server.
        if let tap {
            let tapPattern = GuestChecks.pattern(count: 65536, seed: DeviceBootTests.seed + 3)
            #expect(GuestChecks.result(output, "VIREO-TAP ok")?["fnv"] == GuestChecks.hex(GuestChecks.fnv(tapPattern)), "\(output.suffix(2000))")
            #expect(tap.echo?.received.contains { $0.bytes == 65556 && $0.fnv == GuestChecks.fnv(tapPattern + (0..<20).map { UInt8($0) }) } == true,
                    "the host end of the TAP received the guest's bytes: \(String(describing: tap.echo?.received))")
            #expect(nets.count == 2, "two NICs: \(nets)")
        }

        // vsock: guest → host echoed and checksummed on both sides; host → guest counted by the guest.
        let vsockPattern = GuestChecks.pattern(count: 65536, seed: DeviceBootTests.seed + 2)
        #expect(GuestChecks.result(output, "VIREO-VSOCK out ok")?["fnv"] == GuestChecks.hex(GuestChecks.fnv(vsockPattern)))
        #expect(vsockEcho.received.contains { $0.bytes == 65556 && $0.fnv == GuestChecks.fnv(vsockPattern + (0..<20).map { UInt8($0) }) },
                "the host's vsock listener received the guest's bytes: \(vsockEcho.received)")
        let inbound = GuestChecks.result(output, "VIREO-VSOCK in ok")
        #expect(inbound?["bytes"] == "\(message.utf8.count)" && inbound?["fnv"] == GuestChecks.hex(GuestChecks.fnv(Array(message.utf8))))

        // balloon: the guest saw its free memory drop.
        #expect(GuestChecks.result(output, "VIREO-BALLOON ok") != nil)

        // After the VM: passt gone, the vsock socket removed, hvc0 carried the kernel console.
        for child in passt { #expect(kill(child.pid, 0) != 0, "passt \(child.pid) stopped with the VM") }
        #expect(!FileManager.default.fileExists(atPath: vsock), "the vsock socket is removed")
        let console = (try? String(contentsOfFile: hvc, encoding: .utf8)) ?? ""
        #expect(console.contains("Run /init as init process"), "hvc0 carried the kernel console: \(console.suffix(500))")
    }

    // MARK: control socket

    private func statusDevices(_ socket: String) throws -> [String: Any] {
        let reply = try UnixSocket.request(socket, "status")
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

    /// Connects, sends `message` (whole lines), and returns as many lines as come back.
    static func exchange(_ socket: String, port: Int, message: String, timeout: Double) throws -> String? {
        let fd = try UnixSocket.connect(socket)
        defer { close(fd) }
        try UnixSocket.send(fd, "CONNECT \(port)\n")
        guard let ok = try? UnixSocket.readLine(fd, timeout: timeout), ok.hasPrefix("OK ") else { return nil }
        try UnixSocket.send(fd, message)
        var lines: [String] = []
        for _ in 0..<message.split(separator: "\n", omittingEmptySubsequences: false).count - 1 {
            lines.append(try UnixSocket.readLine(fd, timeout: timeout) + "\n")
        }
        return lines.joined()
    }
}
