import Foundation
import Testing

/// Bad device options: one clear line on stderr, exit status 2, before any guest code runs.
///
/// The options checked while parsing need nothing; those checked while the machine is built (passt,
/// TAP, the vsock socket) come after /dev/kvm is opened, so they need KVM. The kernel is the `hello`
/// micro-guest when it is built (a valid image: without the error the VM would run), else any file.
@Suite struct DeviceBadInputTests {
    private var kernel: String { TestEnvironment.micro("hello") ?? "/bin/true" }

    private func expectOneLineError(_ arguments: [String], mentions: String, environment: [String: String] = [:],
                                    wrapper: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let guest: GuestProcess
        if wrapper.isEmpty {
            guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--no-stdin"] + arguments, environment: environment)
        } else {
            guest = try GuestProcess(arguments: Array(wrapper.dropFirst()) + [TestEnvironment.vireoBinary, "run", "--kernel", kernel, "--no-stdin"] + arguments,
                                     environment: environment, executable: wrapper[0])
        }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        let stderr = guest.errorOutput
        let lines = stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(status == 2, "exit status for \(arguments): \(String(describing: status)), stderr: \(stderr)", sourceLocation: sourceLocation)
        #expect(lines.count == 1, "expected one line, got: \(stderr)", sourceLocation: sourceLocation)
        #expect(stderr.contains(mentions), "stderr should mention '\(mentions)': \(stderr)", sourceLocation: sourceLocation)
        #expect(!guest.output.contains("VIREO-MICRO"), "the guest must not have run", sourceLocation: sourceLocation)
    }

    @Test func vsockCIDOutOfRange() throws {
        try expectOneLineError(["--vsock", "cid=2,socket=/tmp/vireo-bad.sock"], mentions: "3 to 4294967294")
        try expectOneLineError(["--vsock", "cid=4294967295,socket=/tmp/vireo-bad.sock"], mentions: "out of range")
        try expectOneLineError(["--vsock", "socket=/tmp/vireo-bad.sock"], mentions: "cid=N,socket=PATH")
    }

    @Test func balloonTargetLargerThanRAM() throws {
        try expectOneLineError(["--memory", "64M", "--balloon-target", "65M"], mentions: "larger than the guest's RAM")
    }

    @Test func invalidMAC() throws {
        try expectOneLineError(["--net", "user,mac=52:54:00:zz:00:01"], mentions: "is not a MAC address")
    }

    @Test(.enabled { try TestEnvironment.available("passtNotInstalled", .kvm) })
    func passtNotInstalled() throws {
        try expectOneLineError(["--net", "user"], mentions: "apt-get install passt", environment: ["PATH": "/nonexistent"])
    }

    @Test(.enabled { try TestEnvironment.available("vsockSocketPathNotCreatable", .kvm) })
    func vsockSocketPathNotCreatable() throws {
        try expectOneLineError(["--vsock", "cid=3,socket=/nonexistent/dir/v.sock"], mentions: "/nonexistent/dir/v.sock")
        // A regular file in the way is not replaced.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-not-a-socket-\(getpid())").path
        FileManager.default.createFile(atPath: file, contents: Data("keep me".utf8))
        defer { unlink(file) }
        try expectOneLineError(["--vsock", "cid=3,socket=\(file)"], mentions: "not a socket")
        #expect(FileManager.default.contents(atPath: file) == Data("keep me".utf8))
    }

    /// Root without CAP_NET_ADMIN (dropped from the bounding set by setpriv) cannot create a TAP.
    @Test(.enabled { try TestEnvironment.available("tapCreationNotPermitted", .kvm, .root, .executable("/usr/bin/setpriv"), .tun) })
    func tapCreationNotPermitted() throws {
        try expectOneLineError(["--net", "tap=vireonoperm0"], mentions: "needs CAP_NET_ADMIN",
                               wrapper: ["/usr/bin/setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"])
    }
}
