internal import CLinux
import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// virtio-rng (entropy device, type 4): fills each device-writable buffer from the kernel's CSPRNG.
///
/// One request queue; no features, no config space. Each buffer gets at most `maxBytesPerRequest`
/// bytes (the spec lets the device return fewer than asked), so a hostile 4 GiB buffer cannot stall it.
public final class VirtioRNG: VirtioDevice {
    public static let queueSize: UInt16 = 256
    public static let maxBytesPerRequest = 64 * 1024

    private let served = Atomic<UInt64>(0)

    public init() {}

    /// Random bytes handed to the guest so far.
    public var bytesServed: UInt64 { served.load(ordering: .relaxed) }

    public var deviceType: VirtioDeviceType { .entropy }
    public var deviceFeatures: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { [VirtioRNG.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { data.storeAccessValue(0) }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(index) else { return }
        while let chain = try queue.popAvailable() {
            var written = 0
            try chain.forEachPiece(writable: true, from: 0, length: VirtioRNG.maxBytesPerRequest, memory: activation.memory) { view in
                written += VirtioRNG.fill(view)
            }
            served.add(UInt64(written), ordering: .relaxed)
            try queue.addUsed(head: chain.head, length: UInt32(written))
        }
    }

    /// Fills `buffer` with getrandom(2); returns the bytes produced (short only if the kernel fails).
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        var done = 0
        while done < buffer.count, let base = buffer.baseAddress {
            let result = clinux_getrandom(base + done, buffer.count - done)
            if result == -Int(EINTR) { continue }
            guard result > 0 else { break }
            done += result
        }
        return done
    }
}
