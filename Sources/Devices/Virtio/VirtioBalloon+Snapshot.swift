// virtio-balloon's own snapshot state: the host's target and the guest's reported size (its config
// space), and the inflated/released counters. Without it a restored balloon reads target 0 and the
// guest's driver deflates everything it had given back.

extension VirtioBalloon {
    public func snapshotState() -> [UInt8] {
        let saved = statistics
        var w = StateWriter()
        w.u8(1)
        w.u32(saved.targetPages); w.u32(saved.actualPages)
        w.u64(saved.inflatedPages); w.u64(saved.releasedPages)
        return w.bytes
    }

    public func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError) {
        guard !bytes.isEmpty else { return }  // snapshots before format 4 saved nothing
        var r = StateReader(bytes, what: "virtio-balloon state")
        guard try r.u8() == 1 else { throw .invalid(what: "virtio-balloon state (version)") }
        let target = try r.u32(), actual = try r.u32(), inflated = try r.u64(), released = try r.u64()
        try r.finish()
        // Page counts beyond guest RAM are a corrupt or hostile file.
        guard UInt64(target) <= guestPages, UInt64(actual) <= guestPages, inflated <= guestPages else {
            throw .invalid(what: "virtio-balloon state (page counts beyond guest RAM)")
        }
        restoreCounters(target: target, actual: actual, inflated: inflated, released: released)
    }
}
