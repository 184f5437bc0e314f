internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

#if DEBUG
/// TEST HOOKS for the isolation integration tests. Each is inert unless its VIREO_TEST_*
/// environment variable is set; none is reachable from the guest or the control socket. Only
/// debug builds (what the tests run) have them: a release build compiles the empty enum below
/// instead, with no variable names, no raw syscall (csys_raw_syscall is debug-only too) and no
/// crash trigger (issue 12: no test hook in production).
enum TestHooks {
    /// VIREO_TEST_FORBIDDEN_SYSCALL=name[:a0,a1,...]: vCPU 0 makes this syscall right after its
    /// seccomp filter is installed (e.g. `execve`, `openat`, `mprotect:0,4096,7`).
    static let forbiddenSyscall = environment("VIREO_TEST_FORBIDDEN_SYSCALL")
    /// VIREO_TEST_OPEN_PATH=/etc/passwd: once isolation is in place (jail, credentials, filters)
    /// the VMM opens this path for reading and prints the outcome on stderr, as a device model
    /// asked for a host file would.
    static let openPath = environment("VIREO_TEST_OPEN_PATH")
    /// VIREO_TEST_CGROUP_MOUNTINFO=file: cgroup mounts are read from this file instead of
    /// /proc/self/mountinfo (to test hosts without a usable cgroup hierarchy).
    static var cgroupMountinfo: String? { environment("VIREO_TEST_CGROUP_MOUNTINFO").flatMap { readSmallFile($0) } }

    /// VIREO_TEST_VCPU_REFUSES_PARK=N: vCPU N never parks on a pause (a vCPU stuck in the host), so
    /// the pause and snapshot requests must fail and leave the VM running.
    static let refusingVCPU: UInt32? = environment("VIREO_TEST_VCPU_REFUSES_PARK").flatMap { UInt32($0) }

    /// VIREO_TEST_DEVICE_SYSCALL=device:name[:a0,…]: the worker of that virtio device (e.g.
    /// `virtio-rng:openat`) makes the syscall right after its seccomp filter is installed.
    static let deviceSyscall = environment("VIREO_TEST_DEVICE_SYSCALL")

    /// VIREO_TEST_CRASH=thread:kind: that thread (`control`, `vcpu0`, or a virtio device such as
    /// `virtio-rng`) crashes once its seccomp filter is on; kind `trap` overflows an Int (a bare
    /// Swift trap, no message), `fatal` calls fatalError.
    static let crash = environment("VIREO_TEST_CRASH")

    /// True when VIREO_TEST_VCPU_REFUSES_PARK names vCPU `id`.
    @inline(__always)
    static func vcpuRefusesToPark(_ id: UInt32) -> Bool { refusingVCPU == id }

    /// Performs VIREO_TEST_DEVICE_SYSCALL when it names `device`.
    static func performDeviceSyscall(device: String) {
        guard let request = deviceSyscall, request.hasPrefix(device + ":") else { return }
        perform(String(request.dropFirst(device.count + 1)), hook: "VIREO_TEST_DEVICE_SYSCALL")
    }

    /// Performs VIREO_TEST_FORBIDDEN_SYSCALL; returns only if the filter let it through.
    static func performForbiddenSyscall() {
        guard let request = forbiddenSyscall else { return }
        perform(request, hook: "VIREO_TEST_FORBIDDEN_SYSCALL")
    }

    /// Performs VIREO_TEST_CRASH when it names `thread`.
    static func crashIfRequested(in thread: String) {
        guard let request = crash, request.hasPrefix(thread + ":") else { return }
        switch request.dropFirst(thread.count + 1) {
        case "fatal":
            fatalError("VIREO_TEST_CRASH asked for a crash in \(thread)")
        case "trap":
            var value = Int.max
            value += getpid() > 0 ? 1 : 0  // traps: the optimizer cannot know getpid() > 0
            report("test hook: no trap (\(value))")
        default:
            report("VIREO_TEST_CRASH: unknown kind in '\(request)' (trap or fatal)")
        }
    }

    /// Performs VIREO_TEST_OPEN_PATH.
    static func openPathIfRequested() {
        guard let path = openPath else { return }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            report("test hook: opened \(path)")
        } else {
            report("test hook: cannot open \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }

    /// Makes the raw syscall `name[:a0,a1,…]` (pointers as numbers; 0 for a path reads as NULL).
    private static func perform(_ request: String, hook: String) {
        let parts = request.split(separator: ":", maxSplits: 1)
        guard let first = parts.first, let number = Syscalls.number(String(first)) else {
            report("\(hook): unknown syscall '\(request)'")
            return
        }
        var arguments = [Int](repeating: 0, count: 6)
        if parts.count == 2 {
            for (index, text) in parts[1].split(separator: ",").prefix(6).enumerated() { arguments[index] = Int(text) ?? 0 }
        }
        let result = csys_raw_syscall(number, arguments[0], arguments[1], arguments[2], arguments[3], arguments[4], arguments[5])
        report("test hook: \(first) returned \(result) (not stopped by seccomp)")
    }

    private static func report(_ message: String) { reportOnStandardError(message) }
}
#else
/// A release build: the same calls, all inert, and nothing of the hooks compiled in.
enum TestHooks {
    static var cgroupMountinfo: String? { nil }
    @inline(__always) static func vcpuRefusesToPark(_ id: UInt32) -> Bool { false }
    @inline(__always) static func performDeviceSyscall(device: String) {}
    @inline(__always) static func performForbiddenSyscall() {}
    @inline(__always) static func crashIfRequested(in thread: String) {}
    @inline(__always) static func openPathIfRequested() {}
}
#endif
