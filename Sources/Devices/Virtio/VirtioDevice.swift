import Memory

/// What an activated device works with: guest memory, the negotiated features and the driver's queues.
///
/// Created by the transport at DRIVER_OK and dropped at reset or on a violation. Used only on the
/// device's worker thread, under the transport's processing lock.
public final class VirtioActivation: Sendable {
    public let memory: GuestMemory
    /// Features the driver accepted (device-specific and transport bits).
    public let features: UInt64
    /// Indexed by queue number; nil where the driver did not enable the queue.
    public let queues: [VirtQueue?]

    public init(memory: GuestMemory, features: UInt64, queues: [VirtQueue?]) {
        self.memory = memory
        self.features = features
        self.queues = queues
    }

    /// The queue at `index`, if the driver enabled it.
    public func queue(_ index: Int) -> VirtQueue? {
        index >= 0 && index < queues.count ? queues[index] : nil
    }
}

/// A virtio device model, independent of the transport that carries it.
///
/// Register accesses (`readConfig`, `writeConfig`) arrive on vCPU threads; `activate`, `processQueue`,
/// `handleEvent` and `reset` are serialised by the transport, and queue work runs on the device's
/// worker thread, never a vCPU. Throwing `VirtioError` puts the device into NEEDS_RESET. A device
/// must not block indefinitely in any of these.
public protocol VirtioDevice: AnyObject, Sendable {
    /// The DeviceID the driver matches on.
    var deviceType: VirtioDeviceType { get }
    /// Device-specific feature bits offered; the transport adds VERSION_1, EVENT_IDX and INDIRECT_DESC.
    var deviceFeatures: UInt64 { get }
    /// Largest size of each queue (a power of two); the count is the number of queues.
    var queueMaxSizes: [UInt16] { get }

    /// Reads device config space at `offset` (bytes past the end read as zero).
    func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    /// Writes device config space (most devices ignore it).
    func writeConfig(offset: UInt64, from data: UnsafeRawBufferPointer)

    /// The driver set DRIVER_OK: queues are valid from now until `reset`.
    func activate(_ activation: VirtioActivation) throws(VirtioError)
    /// The driver notified queue `index` (or the device kicked itself): consume what is available.
    func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError)
    /// The driver reset the device: forget everything queue-related.
    func reset()

    /// Extra descriptors the worker polls (edge-triggered, EPOLLIN) for the device's backends.
    var eventSources: [Int32] { get }
    /// `eventSources[source]` became readable; `activation` is nil while the driver is not running it.
    func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError)

    /// The configuration a restored guest depends on (e.g. vsock's CID), recorded in a snapshot so a
    /// restore with a different one is refused.
    var snapshotConfiguration: String { get }
    /// Device-specific snapshot state beyond the transport and queues (held descriptor chains,
    /// pending packets, connection tables); taken only while the device is paused.
    func snapshotState() -> [UInt8]
    /// Loads what `snapshotState` saved, after the transport re-activated the device with
    /// `activation` (nil when the driver was not running it).
    func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError)
    /// Whether the restored device's configuration differs from what the guest last read (e.g. a
    /// disk of another size): the transport then signals a config change once the state is loaded.
    var configChangedByRestore: Bool { get }
}

extension VirtioDevice {
    public var snapshotConfiguration: String { "" }
    /// Device-specific snapshot state beyond the transport and queues (none by default).
    public func snapshotState() -> [UInt8] { [] }
    /// Loads what `snapshotState` saved.
    public func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError) {
        guard bytes.isEmpty else { throw .invalid(what: "\(deviceType) device state") }
    }
    public var configChangedByRestore: Bool { false }
    public func writeConfig(offset: UInt64, from data: UnsafeRawBufferPointer) {}
    public func activate(_ activation: VirtioActivation) throws(VirtioError) {}
    public func reset() {}
    public var eventSources: [Int32] { [] }
    public func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError) {}
}

/// Serves config-space reads from a little-endian byte image.
public struct VirtioConfigSpace: Sendable {
    public private(set) var bytes: [UInt8]

    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }

    /// Stores `value` little-endian at `offset`.
    public mutating func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for index in 0..<MemoryLayout<T>.size {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
        }
    }

    /// Copies the bytes at `offset` into `data`; anything past the end reads as zero.
    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for index in 0..<data.count {
            let (position, overflow) = offset.addingReportingOverflow(UInt64(index))
            data[index] = !overflow && position < UInt64(bytes.count) ? bytes[Int(position)] : 0
        }
    }
}
