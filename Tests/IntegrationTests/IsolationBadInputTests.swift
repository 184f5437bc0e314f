import Foundation
import Testing

/// Bad isolation input: one clear line on stderr and exit status 2, before anything starts.
@Suite struct IsolationBadInputTests {
    private var kernel: String { TestEnvironment.micro("poweroff") ?? "/nonexistent/kernel" }

    private func expectOneLineError(_ arguments: [String], mentions: String, environment: [String: String] = [:],
                                    executable: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"] + arguments, environment: environment,
                                     executable: executable)
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        let stderr = guest.errorOutput
        let lines = stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(status == 2, "exit status for \(arguments): \(String(describing: status)), stderr: \(stderr)", sourceLocation: sourceLocation)
        #expect(lines.count == 1, "expected one line, got: \(stderr)", sourceLocation: sourceLocation)
        #expect(stderr.contains(mentions), "stderr should mention '\(mentions)': \(stderr)", sourceLocation: sourceLocation)
        #expect(!guest.output.contains("VIREO-MICRO"), "the guest ran", sourceLocation: sourceLocation)
    }

    @Test func affinityOutsideTheOnlineCPUs() throws {
        try expectOneLineError(["--cpu-affinity", "0,999"], mentions: "--cpu-affinity: CPU 999 is not online on this host")
        try expectOneLineError(["--cpu-affinity", "zero"], mentions: "--cpu-affinity 'zero' is not a CPU list")
        try expectOneLineError(["--cpu-affinity", "3-1"], mentions: "is not a CPU list")
    }

    @Test func weightsOutsideTheCgroupRange() throws {
        try expectOneLineError(["--cpu-weight", "0"], mentions: "--cpu-weight must be between 1 and 10000")
        try expectOneLineError(["--cpu-weight", "10001"], mentions: "--cpu-weight must be between 1 and 10000")
    }

    @Test func badCPUMaxAndMemoryMax() throws {
        try expectOneLineError(["--cpu-max", "lots"], mentions: "--cpu-max 'lots' is not QUOTA[/PERIOD]")
        try expectOneLineError(["--cpu-max", "20ms/5s"], mentions: "the period must be between 1ms and 1s")
        try expectOneLineError(["--cpu-max", "100us"], mentions: "the quota must be at least 1ms")
        try expectOneLineError(["--memory-max", "64M"], mentions: "--memory-max 64 MiB is below guest RAM (64 MiB) plus VMM overhead")
        try expectOneLineError(["--memory-max", "big"], mentions: "--memory-max 'big' is not a size")
    }

    @Test func usersAndGroupsThatDoNotExist() throws {
        try expectOneLineError(["--uid", "no-such-user-vireo"], mentions: "--uid: no user 'no-such-user-vireo' on this host")
        try expectOneLineError(["--uid", "987654"], mentions: "--uid: no user '987654' on this host")
        try expectOneLineError(["--uid", "nobody", "--gid", "no-such-group-vireo"], mentions: "--gid: no group 'no-such-group-vireo'")
        try expectOneLineError(["--gid", "0"], mentions: "--gid needs --uid")
    }

    /// The same names straight to the statically linked vireo-vmm: a name /etc/passwd or /etc/group
    /// lacks sends static glibc to nsswitch.conf's next module (dlopen of libnss_systemd …), which
    /// crashes a static process, unless the VMM limits the lookup to the files (main.swift).
    @Test func usersAndGroupsThatDoNotExistInTheStaticVMM() throws {
        let vmm = TestEnvironment.vireoBinary + "-vmm"
        try expectOneLineError(["--uid", "no-such-user-vireo"], mentions: "--uid: no user 'no-such-user-vireo' on this host", executable: vmm)
        try expectOneLineError(["--uid", "987654"], mentions: "--uid: no user '987654' on this host", executable: vmm)
        try expectOneLineError(["--uid", "nobody", "--gid", "no-such-group-vireo"], mentions: "--gid: no group 'no-such-group-vireo'", executable: vmm)
    }

    @Test func seccompModes() throws {
        try expectOneLineError(["--seccomp", "maybe"], mentions: "--seccomp must be one of on, kill, log, off; got 'maybe'")
        try expectOneLineError([], mentions: "--seccomp must be one of", environment: ["VIREO_SECCOMP": "strict"])
    }

    @Test func noUsableCgroupHierarchy() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-empty-mountinfo-\(getpid())").path
        try "".write(toFile: empty, atomically: true, encoding: .utf8)
        try expectOneLineError(["--cpu-weight", "200"],
                               mentions: "--cpu-weight needs the cgroup cpu controller, but cgroup v2 is not mounted and no cgroup v1 cpu hierarchy is mounted",
                               environment: ["VIREO_TEST_CGROUP_MOUNTINFO": empty])
        let readOnly = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-ro-mountinfo-\(getpid())").path
        try "1 0 0:1 / /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n".write(toFile: readOnly, atomically: true, encoding: .utf8)
        try expectOneLineError(["--memory-max", "1G"], mentions: "the cgroup v1 memory hierarchy at /sys/fs/cgroup/memory is not writable",
                               environment: ["VIREO_TEST_CGROUP_MOUNTINFO": readOnly])
    }

    @Test(.enabled { try TestEnvironment.available("jailPathsTheUserCannotWrite", .root) })
    func jailPathsTheUserCannotWrite() throws {
        let dir = "/tmp/vireo-rootonly-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try expectOneLineError(["--jail", "--uid", "nobody", "--api-socket", dir + "/api.sock"],
                               mentions: "--api-socket directory \(dir) is not writable by nobody")
        try expectOneLineError(["--jail", "--uid", "nobody", "--console-log", "/console.log"],
                               mentions: "--console-log directory / is not writable by nobody")
        if getpwnam("vireo") == nil {
            try expectOneLineError(["--jail"], mentions: "--jail needs --uid")
        }
    }
}
