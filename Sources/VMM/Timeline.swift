#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Startup milestones for `--verbose` and bench/boot: process start, first guest entry, first exit.
public enum Timeline {
    nonisolated(unsafe) private static var processStart: Double = 0
    static let firstEntry = Atomic<UInt64>(0)
    static let firstExit = Atomic<UInt64>(0)

    /// Call first thing in main so later milestones are measured from process start.
    public static func markProcessStart() { processStart = MonotonicClock.now() }

    /// Records a milestone once (nanoseconds since process start; 0 means not yet).
    @inline(__always)
    static func record(_ milestone: borrowing Atomic<UInt64>) {
        guard milestone.load(ordering: .relaxed) == 0 else { return }
        let nanoseconds = UInt64(max(1, (MonotonicClock.now() - processStart) * 1e9))
        _ = milestone.compareExchange(expected: 0, desired: nanoseconds, ordering: .relaxed)
    }

    /// CLOCK_MONOTONIC seconds at vCPU 0's first KVM_RUN (0 if none yet): lets a benchmark time
    /// from its own start of the request (before fork and exec), which `main` cannot see.
    public static var firstEntryMonotonic: Double {
        let entry = firstEntry.load(ordering: .relaxed)
        return entry == 0 ? 0 : processStart + Double(entry) / 1e9
    }

    /// Milliseconds from process start to the first KVM_RUN of vCPU 0, and to its first exit.
    public static var milestonesMs: (firstEntry: Double, firstExit: Double) {
        (Double(firstEntry.load(ordering: .relaxed)) / 1e6, Double(firstExit.load(ordering: .relaxed)) / 1e6)
    }
}

/// Peak resident memory of this process (getrusage), in bytes.
public func peakResidentBytes() -> UInt64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return UInt64(usage.ru_maxrss) * 1024
}
