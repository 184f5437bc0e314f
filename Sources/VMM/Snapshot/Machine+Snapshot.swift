import KVM
import Memory
#if canImport(Glibc)
import Glibc
#endif

extension Machine {
    /// Writes a snapshot of the paused VM to `directory`, which it creates (an existing one must be
    /// an empty directory, not a link): `memory.bin`, a sparse file holding only pages the guest
    /// touched, then `state.bin`; both are created with O_EXCL|O_NOFOLLOW relative to the
    /// directory's descriptor, fsynced and renamed into place, so a crash never leaves a
    /// half-written snapshot under the final names and a planted link is never followed.
    public func snapshot(to directory: String) throws(SnapshotError) {
        let paused = pauseState.withLock { $0.paused }
        guard paused else { throw .notPaused }

        let dirFD = try SnapshotDirectory.create(directory)
        defer { close(dirFD) }
        var regions: [SnapshotState.Region] = []
        var offset: UInt64 = 0
        for region in memory.regions {
            regions.append(.init(guestBase: region.guestBase, size: region.size, fileOffset: offset))
            offset += region.size
        }
        let vcpuStates: [VCPUState]
        let vmState: VMState
        do {
            let indices = try kvm.msrIndexList()
            vcpuStates = try vcpus.map { (vcpu) throws(KVMError) in try vcpu.saveState(msrIndices: indices) }
            vmState = try vm.saveState()
        } catch {
            throw .io("reading VM state: \(error)")
        }
        let state = SnapshotState(
            kernelPath: config.kernelPath, commandLine: commandLine, cpus: config.cpus, memoryBytes: config.memoryBytes,
            debugExitPort: config.debugExitPort, hostKind: hostKind.rawValue, regions: regions, cpuid: cpuidTables,
            vcpus: vcpuStates, vm: vmState, serial: devices.serial.saveState(), i8042: devices.i8042.saveState(),
            rtc: devices.rtc.saveState(), disks: config.disks, rng: config.rng, nets: config.nets,
            virtio: virtio.slots.map { $0.transport.saveState() }, virtioIdentities: virtio.identities)
        try writeMemory(in: dirFD, directory, regions: regions)
        try SnapshotDirectory.writeFile(in: dirFD, directory, SnapshotState.stateFile, state.encoded())
        fsync(dirFD)
    }

    private func writeMemory(in dirFD: Int32, _ directory: String, regions: [SnapshotState.Region]) throws(SnapshotError) {
        let name = SnapshotState.memoryFile
        let temporary = directory + "/" + name + ".tmp"
        let fd = try SnapshotDirectory.createTemporary(in: dirFD, directory, name)
        defer { close(fd) }
        let total = regions.map { $0.fileOffset + $0.size }.max() ?? 0
        guard ftruncate(fd, off_t(total)) == 0 else { throw .io("cannot size \(temporary): \(String(cString: strerror(errno)))") }
        let page = 4096
        for (region, saved) in zip(memory.regions, regions) {
            let pages = Int(region.size) / page
            var resident = [UInt8](repeating: 0, count: pages)
            // Pages never touched are not resident: they stay holes (zero) in the sparse file.
            if mincore(region.host, Int(region.size), &resident) != 0 { resident = [UInt8](repeating: 1, count: pages) }
            var index = 0
            while index < pages {
                guard resident[index] & 1 != 0, !isZeroPage(region.host + index * page) else { index += 1; continue }
                var run = 1  // write runs of consecutive non-zero pages in one call
                while index + run < pages && run < 256 && resident[index + run] & 1 != 0
                        && !isZeroPage(region.host + (index + run) * page) { run += 1 }
                let written = pwrite(fd, region.host + index * page, run * page, off_t(saved.fileOffset) + off_t(index * page))
                guard written == run * page else { throw .io("writing \(temporary): \(String(cString: strerror(errno)))") }
                index += run
            }
        }
        try SnapshotDirectory.commit(fd, in: dirFD, directory, name)
    }

    private func isZeroPage(_ pointer: UnsafeMutableRawPointer) -> Bool {
        let words = pointer.assumingMemoryBound(to: UInt64.self)
        for index in 0..<512 where words[index] != 0 { return false }
        return true
    }
}

extension Machine {
    /// `--snapshot-on`: pause, write `DIR/snapshot-N` (the first N not taken, so that no earlier
    /// snapshot is ever overwritten), resume; one line on stderr says where it went, or why not.
    func snapshotOnSignal() {
        guard let base = config.snapshotDirectory else { return }
        mkdir(base, 0o700)
        var index = 1
        var info = stat()
        while stat("\(base)/snapshot-\(index)", &info) == 0 { index += 1 }
        let directory = "\(base)/snapshot-\(index)"
        let started = MonotonicClock.now()
        let wasPaused = pauseState.withLock { $0.paused }
        let message: String
        do {
            try pause()
            try snapshot(to: directory)
            message = "snapshot written to \(directory) in \(Int((MonotonicClock.now() - started) * 1000)) ms"
        } catch {
            message = "snapshot to \(directory) failed: \(error)"
        }
        if !wasPaused { resume() }
        reportOnStandardError(message)
    }
}
