import Devices

/// virtio-net devices for `--net` (user-mode networking through passt, or a TAP device).
enum NetworkDevices {
    /// Builds each NIC's backend — a `passt` child for `user`, the named TAP for `tap=NAME` — and
    /// adds its virtio-net device. Fails with one line, before any guest code runs, when passt is
    /// missing or the TAP cannot be opened; passt is stopped when the VM's workers stop.
    static func add(_ specs: [NetSpec], to virtio: VirtioDevices) throws(VMMError) {
        for (index, spec) in specs.enumerated() {
            let backend: any NetBackend
            switch spec.backend {
            case .user:
                let passt = try PasstProcess(options: PasstProcess.options(ports: spec.ports, ipv4: spec.ipv4))
                virtio.addCleanup { passt.stop() }
                virtio.addHelperProcess(passt.pid)
                backend = StreamNetBackend(fd: passt.socket)
            case let .tap(name):
                do {
                    backend = try TapBackend(name: name)
                } catch {
                    throw .invalidConfiguration("--net tap=\(name): \(error)")
                }
            }
            let device: VirtioNet
            do {
                device = try VirtioNet(backend: backend, mac: spec.mac)
            } catch {
                throw .invalidConfiguration("--net: \(error)")
            }
            try virtio.add(device, name: "virtio-net\(index)")
        }
    }
}
