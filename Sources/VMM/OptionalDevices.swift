import Devices
#if canImport(Glibc)
import Glibc
#endif

/// The optional virtio devices besides disks, rng and NICs: vsock, balloon and a virtio console.
enum OptionalDevices {
    /// Adds what `config` asks for; host resources (the vsock socket, the console file or socket)
    /// are created here so a bad path fails with one line before any guest code runs.
    static func add(_ config: VMConfig, to virtio: VirtioDevices) throws(VMMError) {
        if let spec = config.vsock {
            let listener: Int32
            do {
                listener = try UnixSockets.listen(path: spec.socketPath)
            } catch {
                throw .invalidConfiguration("--vsock socket \(error)")
            }
            let path = spec.socketPath
            virtio.addCleanup { unlink(path) }
            let connector = HostConnector()
            virtio.addStartup { connector.start() }
            virtio.addCleanup { connector.stop() }
            do {
                try virtio.add(VirtioVsock(guestCID: spec.cid, socketPath: spec.socketPath, listener: listener,
                                           connect: { connector.connect($0) }), name: "virtio-vsock")
            } catch let error as VMMError {
                throw error
            } catch {
                throw .invalidConfiguration("--vsock: \(error)")
            }
        }
        if let spec = config.balloon {
            try spec.validate(memoryBytes: config.memoryBytes)
            let device: VirtioBalloon
            do {
                device = try VirtioBalloon(guestMemoryBytes: config.memoryBytes,
                                           targetPages: UInt32(spec.targetBytes / VirtioBalloon.pageSize))
            } catch {
                throw .invalidConfiguration("--balloon: \(error)")
            }
            try virtio.add(device, name: "virtio-balloon")
        }
        if let spec = config.virtioConsole {
            let backend: VirtioConsole.Backend
            switch spec.kind {
            case .file:
                // Never a FIFO or device (it would block or write somewhere else), never through a link.
                switch CheckedOpen.open(spec.path, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644, noFollow: true) {
                case let .success(fd): backend = .file(fd)
                case let .failure(.system(error)): throw .file(path: spec.path, what: "--virtio-console: cannot open", errno: error)
                case let .failure(refusal): throw .invalidConfiguration("--virtio-console \(spec.path) \(refusal)")
                }
            case .socket:
                do {
                    backend = .socket(listener: try UnixSockets.listen(path: spec.path, backlog: 4))
                } catch {
                    throw .invalidConfiguration("--virtio-console socket \(error)")
                }
                let path = spec.path
                virtio.addCleanup { unlink(path) }
            }
            do {
                try virtio.add(VirtioConsole(backend: backend), name: "virtio-console")
            } catch let error as VMMError {
                throw error
            } catch {
                throw .invalidConfiguration("--virtio-console: \(error)")
            }
        }
    }
}
