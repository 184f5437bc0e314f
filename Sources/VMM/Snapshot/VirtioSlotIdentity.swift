import Devices

/// Which device a saved virtio slot belongs to: its virtio type, slot name and guest-visible configuration.
struct VirtioSlotIdentity: Equatable {
    var type: UInt32
    var name: String
    var configuration: String

    init(type: UInt32, name: String, configuration: String) {
        self.type = type
        self.name = name
        self.configuration = configuration
    }

    init(slotName: String, device: any VirtioDevice) {
        self.init(type: device.deviceType.rawValue, name: slotName, configuration: device.snapshotConfiguration)
    }

    /// "virtio-vsock (type 19, cid=3)".
    var description: String {
        configuration.isEmpty ? "\(name) (type \(type))" : "\(name) (type \(type), \(configuration))"
    }

    /// Refuses a restore that would bind `configured` to state saved from `saved`, naming both devices.
    static func check(saved: [VirtioSlotIdentity], configured: [VirtioSlotIdentity]) throws(VMMError) {
        for index in 0..<max(saved.count, configured.count) {
            let was = index < saved.count ? saved[index].description : "no device"
            let now = index < configured.count ? configured[index].description : "no device"
            guard was == now else {
                throw .invalidConfiguration("snapshot device mismatch at virtio slot \(index): the snapshot holds \(was), this restore configures \(now); restore with the snapshot's device options")
            }
        }
    }
}
