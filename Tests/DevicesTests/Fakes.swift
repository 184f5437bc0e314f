import Glibc
import Synchronization
@testable import Devices

/// An interrupt line that records every level it is driven to.
final class FakeLine: InterruptLine {
    private let state = Mutex<[Bool]>([])

    func setLevel(_ high: Bool) { state.withLock { $0.append(high) } }

    /// Current level (low until first driven).
    var level: Bool { state.withLock { $0.last ?? false } }
    /// Every level set, in order.
    var history: [Bool] { state.withLock { $0 } }
    /// Number of times the line was driven high.
    var raises: Int { state.withLock { $0.filter { $0 }.count } }
}

/// A console sink that keeps everything written to it.
final class FakeSink: ConsoleSink {
    private let bytes = Mutex<[UInt8]>([])

    func consoleOutput(_ data: UnsafeRawBufferPointer) { bytes.withLock { $0.append(contentsOf: data) } }

    var output: [UInt8] { bytes.withLock { $0 } }
}

/// Counts calls to a callback from any thread.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    private let last = Atomic<Int>(0)

    func hit(_ argument: Int = 0) {
        last.store(argument, ordering: .relaxed)
        value.add(1, ordering: .relaxed)
    }

    var count: Int { value.load(ordering: .relaxed) }
    var lastArgument: Int { last.load(ordering: .relaxed) }
}

/// Deterministic PRNG (SplitMix64) so randomized tests are reproducible from their seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension BusDevice {
    /// A byte-wide port read, as `inb`.
    func inb(_ offset: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: read(offset, size: 1)) }

    /// A byte-wide port write, as `outb`.
    func outb(_ offset: UInt64, _ value: UInt8) { write(offset, size: 1, value: UInt64(value)) }

    func read(_ offset: UInt64, size: Int) -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { raw in
            read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<size]))
        }
        return value
    }

    func write(_ offset: UInt64, size: Int, value: UInt64) {
        var value = value
        withUnsafeBytes(of: &value) { raw in
            write(offset: offset, from: UnsafeRawBufferPointer(rebasing: raw[0..<size]))
        }
    }
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Runs `body` on a new pthread; join it with `pthread_join`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    precondition(rc == 0, "pthread_create failed")
    return thread
}
