// virtio-blk's own snapshot state: the capacity the guest's driver was told. A restore that gives
// the slot another backend (a clone's own disk, or an image run's root disk put in place of the
// empty one a warm-start snapshot was taken with) compares it with the new backend's capacity; if
// they differ the transport bumps the config generation and raises a config-change interrupt
// (virtio 1.2 §2.5.1, §5.2.6.2), so the driver re-reads the capacity before the guest uses the disk.

extension VirtioBlock {
    public func snapshotState() -> [UInt8] {
        var w = StateWriter()
        w.u8(1)
        w.u64(capacity)
        return w.bytes
    }

    public func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError) {
        guard !bytes.isEmpty else { return }  // snapshots before the capacity was recorded
        var r = StateReader(bytes, what: "virtio-blk state")
        guard try r.u8() == 1 else { throw .invalid(what: "virtio-blk state (version)") }
        let saved = try r.u64()
        try r.finish()
        capacityChangedByRestore.store(saved != capacity, ordering: .relaxed)
    }

    public var configChangedByRestore: Bool { capacityChangedByRestore.load(ordering: .relaxed) }
}
