/// Virtio device types (virtio 1.2 §5): the DeviceID register value.
public enum VirtioDeviceType: UInt32, Sendable {
    case network = 1
    case block = 2
    case console = 3
    case entropy = 4
    case balloon = 5
    case vsock = 19
}

/// Feature bits every transport understands (virtio 1.2 §6), as bit masks.
public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
}

/// Device status register bits (virtio 1.2 §2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt32 = 0x01
    public static let driver: UInt32 = 0x02
    public static let driverOK: UInt32 = 0x04
    public static let featuresOK: UInt32 = 0x08
    public static let needsReset: UInt32 = 0x40
    public static let failed: UInt32 = 0x80
}

/// InterruptStatus bits of virtio-mmio (virtio 1.2 §4.2.2).
public enum VirtioInterruptBit {
    public static let usedBuffer: UInt32 = 0x1
    public static let configChange: UInt32 = 0x2
}
