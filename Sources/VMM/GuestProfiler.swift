#if canImport(Glibc)
import Glibc
#endif
import KVM
import Synchronization

/// A debug sampler of the guest's instruction pointer, off unless `VIREO_GUEST_PROFILE=PATH[,MS]` is
/// set in the VMM's environment (docs/images.md, "Profiling a guest"). A thread kicks every vCPU thread
/// out of KVM_RUN every MS milliseconds (default 2) with the ordinary kick signal; the vCPU thread then
/// reads its RIP (KVM_GET_REGS) and stores it with the time. When the VM ends the samples go to PATH as
/// text, one per line: microseconds since the VMM started, vCPU id, RIP in hex. A kick that finds the
/// vCPU thread outside KVM_RUN (handling an exit in the VMM) takes no sample: the count of those is in
/// the file's header. `bench/guest-profile` resolves the addresses against the guest kernel's System.map.
/// When the variable is unset, `shared` is nil and the vCPU loop pays one load and branch per kick.
/// @unchecked Sendable: the sample buffer is written through an atomic slot counter (each slot by one
/// thread, once) and read only after every vCPU thread has ended.
final class GuestProfiler: @unchecked Sendable {
    /// The process's profiler, or nil (the normal case).
    static let shared: GuestProfiler? = GuestProfiler.fromEnvironment()

    private static let capacity = 1 << 18
    private let fd: Int32
    private let intervalMicroseconds: UInt32
    private let times = UnsafeMutablePointer<UInt64>.allocate(capacity: GuestProfiler.capacity)
    private let rips = UnsafeMutablePointer<UInt64>.allocate(capacity: GuestProfiler.capacity)
    private let vcpuIDs = UnsafeMutablePointer<UInt32>.allocate(capacity: GuestProfiler.capacity)
    private let next = Atomic<Int>(0)
    private let kicks = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)
    private let start = MonotonicClock.now()

    private init(fd: Int32, intervalMicroseconds: UInt32) {
        self.fd = fd
        self.intervalMicroseconds = intervalMicroseconds
    }

    private static func fromEnvironment() -> GuestProfiler? {
        guard let raw = getenv("VIREO_GUEST_PROFILE") else { return nil }
        let parts = String(cString: raw).split(separator: ",", maxSplits: 1).map(String.init)
        guard let path = parts.first, !path.isEmpty else { return nil }
        let milliseconds = parts.count > 1 ? (Double(parts[1]) ?? 2) : 2
        // Opened now, before any jail or seccomp filter: the samples are written at the end.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            reportOnStandardError("VIREO_GUEST_PROFILE: cannot open \(path): \(String(cString: strerror(errno)))")
            return nil
        }
        return GuestProfiler(fd: fd, intervalMicroseconds: UInt32(max(0.1, min(milliseconds, 1000)) * 1000))
    }

    /// Starts the kicking thread for `threads` (the vCPU threads of the VM that is starting).
    func start(kicking threads: [OSThread]) {
        running.store(true, ordering: .releasing)
        _ = OSThread(name: "vireo-profiler") { [self] in
            while running.load(ordering: .acquiring) {
                usleep(intervalMicroseconds)
                for thread in threads where !thread.isFinished {
                    kicks.add(1, ordering: .relaxed)
                    thread.signal(kickSignal)
                }
            }
        }
    }

    /// Called by a vCPU thread after KVM_RUN returned for a signal: records where the guest was.
    @inline(__always)
    func sample(_ vcpu: VCPU) {
        guard let rip = try? vcpu.registers().rip else { return }
        let slot = next.add(1, ordering: .relaxed).oldValue
        guard slot < GuestProfiler.capacity else { return }
        times[slot] = UInt64(max(0, (MonotonicClock.now() - start) * 1e6))
        rips[slot] = rip
        vcpuIDs[slot] = vcpu.id
    }

    /// Stops kicking and writes the samples (after every vCPU thread has ended).
    func finish() {
        running.store(false, ordering: .releasing)
        let count = min(next.load(ordering: .relaxed), GuestProfiler.capacity)
        var text = "# vireo guest profile v1: interval_us \(intervalMicroseconds) kicks \(kicks.load(ordering: .relaxed)) samples \(count)\n"
        text.reserveCapacity(count * 32)
        for index in 0..<count {
            text += "\(times[index]) \(vcpuIDs[index]) \(String(rips[index], radix: 16))\n"
        }
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 { break }
            offset += written
        }
        bytes.removeAll()
        close(fd)
    }
}
