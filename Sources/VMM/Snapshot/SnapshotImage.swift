import Devices
import Memory
#if canImport(Glibc)
import Glibc
#endif

/// An opened snapshot directory: verified state plus the memory file to map.
struct SnapshotImage {
    let directory: String
    let state: SnapshotState
    /// The memory file when the snapshot came as descriptors (SnapshotFiles); nil: open it by path.
    var memoryFD: Int32? = nil

    /// Reads and verifies the state from a descriptor and checks the memory file's descriptor the
    /// same way `open(_:)` checks the files it opens.
    static func open(_ files: SnapshotFiles) throws(SnapshotError) -> SnapshotImage {
        let state = try SnapshotState.decode(try files.readState())
        let memoryPath = files.directory + "/" + SnapshotState.memoryFile
        var info = stat()
        guard fstat(files.memory, &info) == 0 else {
            throw .memoryFile("cannot stat \(memoryPath): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .memoryFile("\(memoryPath) is not a regular file") }
        try check(state, memorySize: info.st_size, memoryPath: memoryPath)
        return SnapshotImage(directory: files.directory, state: state, memoryFD: files.memory)
    }

    private static func check(_ state: SnapshotState, memorySize: off_t, memoryPath: String) throws(SnapshotError) {
        guard UInt64(memorySize) >= state.memoryFileSize else {
            throw .memoryFile("\(memoryPath) has \(memorySize) bytes but the snapshot declares \(state.memoryFileSize)")
        }
        guard state.regions.reduce(0, { $0 + $1.size }) == state.memoryBytes else {
            throw .corrupt("memory regions do not add up to the VM's RAM size")
        }
    }

    /// Reads and verifies `state.bin` and checks that `memory.bin` is as large as declared.
    static func open(_ directory: String) throws(SnapshotError) -> SnapshotImage {
        let statePath = directory + "/" + SnapshotState.stateFile
        let bytes: [UInt8]
        do {
            bytes = try FileLoader.read(statePath, what: "snapshot state", noFollow: true)
        } catch {
            throw .io(error.description)
        }
        let state = try SnapshotState.decode(bytes)
        let memoryPath = directory + "/" + SnapshotState.memoryFile
        var info = stat()
        guard lstat(memoryPath, &info) == 0 else {
            throw .memoryFile("\(memoryPath) is missing (\(String(cString: strerror(errno))))")
        }
        if let refusal = CheckedOpen.refusal(info.st_mode, .regular) { throw .memoryFile("\(memoryPath) \(refusal)") }
        try check(state, memorySize: info.st_size, memoryPath: memoryPath)
        return SnapshotImage(directory: directory, state: state)
    }

    /// Maps each RAM region from the memory file, private and copy-on-write: pages load on first
    /// touch, clones share unmodified pages, and the snapshot file is never written.
    func mapMemory() throws(SnapshotError) -> GuestMemory {
        let path = directory + "/" + SnapshotState.memoryFile
        let fd: Int32
        if let memoryFD {
            fd = memoryFD
        } else {
            switch CheckedOpen.open(path, flags: O_RDONLY, noFollow: true, image: true) {
            case let .success(opened): fd = opened
            case let .failure(.system(error)): throw .memoryFile("cannot open \(path): \(String(cString: strerror(error)))")
            case let .failure(refusal): throw .memoryFile("\(path) \(refusal)")
            }
        }
        defer { close(fd) }  // the mappings stay valid after close (a handed-over descriptor too)
        var regions: [GuestMemoryRegion] = []
        // A warm-pool VMM registered its memory slots ahead over reserved ranges for this layout:
        // the file goes exactly there (MAP_FIXED replaces the reservation), and KVM needs no new slot.
        let reserved = KVMPrewarm.claimReservation(for: state.regions.map { ($0.guestBase, $0.size) })
        for (index, region) in state.regions.enumerated() {
            let pointer = mmap(reserved?[index], Int(region.size), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_NORESERVE | (reserved != nil ? MAP_FIXED : 0), fd, off_t(region.fileOffset))
            guard let pointer, pointer != MAP_FAILED else {
                throw .memoryFile("cannot map \(path): \(String(cString: strerror(errno)))")
            }
            regions.append(GuestMemoryRegion(guestBase: region.guestBase, size: region.size, host: pointer))
        }
        // The mappings live as long as the VMM process: one VM per process.
        return GuestMemory(borrowing: regions)
    }
}
