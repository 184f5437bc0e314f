// Snapshot state of a virtio-mmio transport: registers, negotiated features, queue layouts and ring
// positions, pending interrupt bits. Taken and restored only while the VM is paused (no vCPU or
// worker touches the device).

extension VirtQueue {
    /// Ring positions for a snapshot.
    var positions: (available: UInt16, used: UInt16, signalled: UInt16) { (nextAvailable, nextUsed, signalledUsed) }

    /// Restores ring positions saved by a snapshot.
    func restorePositions(available: UInt16, used: UInt16, signalled: UInt16) {
        setPositions(available: available, used: used, signalled: signalled)
    }
}

extension VirtioMMIOTransport {
    /// The transport's state as bytes (see `restoreState`).
    public func saveState() -> [UInt8] {
        var w = StateWriter()
        w.u8(1)
        let r = registers.withLock { $0 }
        w.u32(r.status); w.u32(r.deviceFeaturesSel); w.u32(r.driverFeaturesSel); w.u64(r.driverFeatures)
        w.u32(r.queueSel); w.u32(r.configGeneration)
        w.u32(UInt32(r.queues.count))
        for q in r.queues {
            w.u16(q.size); w.bool(q.ready)
            w.u64(q.layout.descriptorTable); w.u64(q.layout.availableRing); w.u64(q.layout.usedRing)
        }
        let positions = engine.withLock { e -> [(UInt16, UInt16, UInt16)?] in
            guard let activation = e.activation else { return [] }
            return activation.queues.map { $0?.positions }
        }
        w.u32(UInt32(positions.count))
        for p in positions {
            w.bool(p != nil)
            w.u16(p?.0 ?? 0); w.u16(p?.1 ?? 0); w.u16(p?.2 ?? 0)
        }
        w.u32(interruptState.withLock { $0 })
        w.blob(device.snapshotState())
        return w.bytes
    }

    /// Loads saved state: registers, then (if the driver had the device running) the queues at
    /// their saved ring positions and the device's own state. Guest-controlled values are
    /// re-validated exactly as when the driver set them.
    public func restoreState(_ bytes: [UInt8]) throws(StateError) {
        var rd = StateReader(bytes, what: "virtio device \(name)")
        guard try rd.u8() == 1 else { throw .invalid(what: "virtio device \(name) (version)") }
        var r = Registers(queueCount: queueMaxSizes.count)
        r.status = try rd.u32(); r.deviceFeaturesSel = try rd.u32(); r.driverFeaturesSel = try rd.u32()
        r.driverFeatures = try rd.u64(); r.queueSel = try rd.u32(); r.configGeneration = try rd.u32()
        guard Int(try rd.u32()) == queueMaxSizes.count else { throw .invalid(what: "virtio device \(name) (queue count)") }
        for index in 0..<queueMaxSizes.count {
            var q = QueueRegisters()
            q.size = try rd.u16(); q.ready = try rd.bool()
            q.layout = VirtQueueLayout(size: q.size, descriptorTable: try rd.u64(), availableRing: try rd.u64(),
                                       usedRing: try rd.u64())
            r.queues[index] = q
        }
        let positionCount = Int(try rd.u32())
        guard positionCount == 0 || positionCount == queueMaxSizes.count else {
            throw .invalid(what: "virtio device \(name) (queue positions)")
        }
        var positions: [(UInt16, UInt16, UInt16)?] = []
        for _ in 0..<positionCount {
            let present = try rd.bool()
            let p = (try rd.u16(), try rd.u16(), try rd.u16())
            positions.append(present ? p : nil)
        }
        let interrupts = try rd.u32()
        let deviceState = try rd.blob(maximum: 1 << 20)
        try rd.finish()
        guard r.driverFeatures & ~offeredFeatures == 0 else { throw .invalid(what: "virtio device \(name) (features)") }

        let features = r.driverFeatures
        let running = r.status & VirtioStatus.driverOK != 0 && r.status & VirtioStatus.needsReset == 0 && !positions.isEmpty
        var activation: VirtioActivation?
        if running {
            var built: [VirtQueue?] = []
            for (index, queue) in r.queues.enumerated() {
                guard queue.ready, let saved = positions[index] else { built.append(nil); continue }
                guard queue.size <= queueMaxSizes[index] else { throw .invalid(what: "virtio device \(name) (queue size)") }
                var layout = queue.layout
                layout.size = queue.size
                let virtQueue: VirtQueue
                do {
                    virtQueue = try VirtQueue(index: index, layout: layout, memory: memory, features: features)
                } catch {
                    throw .invalid(what: "virtio device \(name) (queue \(index): \(error))")
                }
                virtQueue.restorePositions(available: saved.0, used: saved.1, signalled: saved.2)
                built.append(virtQueue)
            }
            activation = VirtioActivation(memory: memory, features: features, queues: built)
        }
        registers.withLock { $0 = r }
        try engine.withLock { (e) throws(StateError) in
            e.activation = nil
            activeFlag.store(false, ordering: .relaxed)
            if let activation {
                do {
                    try device.activate(activation)
                } catch {
                    throw .invalid(what: "virtio device \(name) (activation: \(error))")
                }
                e.activation = activation
                activeFlag.store(true, ordering: .relaxed)
            }
        }
        try device.restoreSnapshotState(deviceState, activation: activation)
        interruptState.withLock { $0 = interrupts }
        // After the saved bits: the driver sees a new generation and one config-change interrupt.
        if device.configChangedByRestore { signalConfigChange() }
    }
}
