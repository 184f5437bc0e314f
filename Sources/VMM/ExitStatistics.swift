/// Per-vCPU exit counters; written only by the owning vCPU thread, read after it stops.
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
}
