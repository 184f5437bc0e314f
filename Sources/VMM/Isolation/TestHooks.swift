internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// TEST HOOKS for the isolation integration tests. Each is inert unless its VIREO_TEST_*
/// environment variable is set; none is reachable from the guest or the control socket, and a
/// release build compiles none of them in (issue 12: no raw-syscall hook in production).
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

    /// True when VIREO_TEST_VCPU_REFUSES_PARK names vCPU `id` (always false in a release build).
    @inline(__always)
    static func vcpuRefusesToPark(_ id: UInt32) -> Bool {
        #if DEBUG
        return refusingVCPU == id
        #else
        return false
        #endif
    }

    /// VIREO_TEST_DEVICE_SYSCALL=device:name[:a0,…]: the worker of that virtio device (e.g.
    /// `virtio-rng:openat`) makes the syscall right after its seccomp filter is installed.
    static let deviceSyscall = environment("VIREO_TEST_DEVICE_SYSCALL")

    /// Performs VIREO_TEST_DEVICE_SYSCALL when it names `device`.
    static func performDeviceSyscall(device: String) {
        #if DEBUG
        guard let request = deviceSyscall, request.hasPrefix(device + ":") else { return }
        perform(String(request.dropFirst(device.count + 1)), hook: "VIREO_TEST_DEVICE_SYSCALL")
        #endif
    }

    /// Only debug builds (what the tests run) read the hooks: a release binary has none.
    private static func environment(_ name: String) -> String? {
        #if DEBUG
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
        #else
        return nil
        #endif
    }

    /// Performs VIREO_TEST_FORBIDDEN_SYSCALL; returns only if the filter let it through.
    static func performForbiddenSyscall() {
        #if DEBUG
        guard let request = forbiddenSyscall else { return }
        perform(request, hook: "VIREO_TEST_FORBIDDEN_SYSCALL")
        #endif
    }

    /// Makes the raw syscall `name[:a0,a1,…]` (pointers as numbers; 0 for a path reads as NULL).
    private static func perform(_ request: String, hook: String) {
        #if DEBUG
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
        #endif
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

    private static func report(_ message: String) { reportOnStandardError(message) }
}
