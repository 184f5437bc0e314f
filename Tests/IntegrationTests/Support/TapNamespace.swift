import Foundation

/// A TAP interface for a VMM to attach to, whose host end then lives in a network namespace of the
/// test's own (so the test's private-range addresses never meet the host's networks), with an echo
/// server listening there. Needs root and /dev/net/tun.
final class TapNamespace: @unchecked Sendable {
    let namespace: String
    let tap: String
    static let hostAddress = "10.200.0.1", guestAddress = "10.200.0.2", netmask = "255.255.255.0"
    /// The echo server's port: fixed, since the namespace is the test's own and empty.
    static let echoPort: UInt16 = 7777
    private(set) var echo: EchoServer?

    /// Creates a persistent TAP in the current namespace (the VMM attaches to it by name) and an empty namespace.
    init() throws {
        namespace = "vireo-dt-\(getpid())"
        tap = "vdt\(getpid() % 1_000_000)"
        try TapNamespace.ip(["tuntap", "add", "dev", tap, "mode", "tap"])
        try TapNamespace.ip(["netns", "add", namespace])
    }

    /// Once the VMM holds the TAP: moves it into the namespace, gives the host end its address and
    /// starts the echo server there (a socket stays in the namespace it was made in).
    func moveAndServe() throws {
        try TapNamespace.ip(["link", "set", tap, "netns", namespace])
        try TapNamespace.ip(["-n", namespace, "addr", "add", "\(TapNamespace.hostAddress)/24", "dev", tap])
        try TapNamespace.ip(["-n", namespace, "link", "set", tap, "up"])
        try TapNamespace.ip(["-n", namespace, "link", "set", "lo", "up"])
        let namespacePath = "/run/netns/\(namespace)"
        let made = Locked<Result<EchoServer, Error>?>(nil)
        let thread = Thread {
            // This thread alone enters the namespace, makes the listening socket, and ends.
            let fd = open(namespacePath, O_RDONLY | O_CLOEXEC)
            defer { if fd >= 0 { close(fd) } }
            guard fd >= 0, TapNamespace.setns(fd, TapNamespace.newNet) == 0 else {
                made.withLock { $0 = .failure(UnixSocket.Failure(description: "setns \(namespacePath): errno \(errno)")) }
                return
            }
            made.withLock { $0 = Result { try EchoServer(port: TapNamespace.echoPort) } }
        }
        thread.start()
        while made.current == nil { usleep(10_000) }
        echo = try made.current!.get()
    }

    deinit {
        echo = nil
        // The TAP is persistent: delete it wherever it is now, then the namespace.
        _ = try? TapNamespace.ip(["-n", namespace, "tuntap", "del", "dev", tap, "mode", "tap"])
        _ = try? TapNamespace.ip(["tuntap", "del", "dev", tap, "mode", "tap"])
        _ = try? TapNamespace.ip(["netns", "del", namespace])
    }

    /// glibc's setns(2), which Swift's Glibc module does not export (it needs _GNU_SOURCE).
    private static let setns: @convention(c) (Int32, Int32) -> Int32 = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { fatalError("glibc has no setns") }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()
    private static let newNet: Int32 = 0x4000_0000  // CLONE_NEWNET

    /// Whether this host can make one: root and /dev/net/tun.
    static var possible: Bool { getuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0 }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> String {
        let tool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"
        let result = try DeviceBootTests.run(tool, arguments)
        guard result.status == 0 else { throw UnixSocket.Failure(description: "ip \(arguments.joined(separator: " ")): \(result.output)") }
        return result.output
    }
}
