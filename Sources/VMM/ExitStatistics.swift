import Synchronization

/// A snapshot of exit counts by kind.
public struct ExitStatistics: Sendable {
    public var io: UInt64 = 0
    public var mmio: UInt64 = 0
    public var emulated: UInt64 = 0
    public var injected: UInt64 = 0
    public var interrupted: UInt64 = 0
    public var other: UInt64 = 0

    public init() {}

    public static func + (a: ExitStatistics, b: ExitStatistics) -> ExitStatistics {
        var sum = a
        sum.io += b.io; sum.mmio += b.mmio; sum.emulated += b.emulated; sum.injected += b.injected
        sum.interrupted += b.interrupted; sum.other += b.other
        return sum
    }

    /// The counts as the control socket's `status` reports them.
    var counts: ExitCounts {
        ExitCounts(io: io, mmio: mmio, emulated: emulated, injected: injected, kicks: interrupted, other: other)
    }
}

/// Live per-vCPU exit counters: written by the vCPU thread (relaxed atomics, no contention),
/// readable at any time by the control socket.
final class ExitCounters: Sendable {
    let io = Atomic<UInt64>(0)
    let mmio = Atomic<UInt64>(0)
    let emulated = Atomic<UInt64>(0)
    let injected = Atomic<UInt64>(0)
    let interrupted = Atomic<UInt64>(0)
    let other = Atomic<UInt64>(0)

    var snapshot: ExitStatistics {
        var s = ExitStatistics()
        s.io = io.load(ordering: .relaxed); s.mmio = mmio.load(ordering: .relaxed)
        s.emulated = emulated.load(ordering: .relaxed); s.injected = injected.load(ordering: .relaxed)
        s.interrupted = interrupted.load(ordering: .relaxed); s.other = other.load(ordering: .relaxed)
        return s
    }
}
