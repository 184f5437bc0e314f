/// virtio-net devices for `--net` (user-mode networking through passt, or a TAP device).
enum NetworkDevices {
    static func add(_ specs: [NetSpec], to virtio: VirtioDevices) throws(VMMError) {
        throw .invalidConfiguration("--net is not available in this build yet")
    }
}
