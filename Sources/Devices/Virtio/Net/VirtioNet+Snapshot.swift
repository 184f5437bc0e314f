// virtio-net's own snapshot state: the receive chain it held (popped, no frame yet), a received
// frame waiting for a guest buffer, and a transmitted frame the backend had not taken. Without it
// a restored guest would lose a receive buffer for good and drop two packets.

extension VirtioNet {
    public func snapshotState() -> [UInt8] {
        var w = StateWriter()
        w.u8(1)
        w.bool(heldChain != nil); w.u16(heldChain?.head ?? 0)
        w.blob(frameLength.map { Array(UnsafeRawBufferPointer(rebasing: frame[0..<$0])) } ?? [])
        w.bool(frameLength != nil)
        w.blob(txHeldLength.map { Array(UnsafeRawBufferPointer(rebasing: txFrame[0..<$0])) } ?? [])
        w.bool(txHeldLength != nil)
        return w.bytes
    }

    public func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError) {
        guard !bytes.isEmpty else { return }  // version 3 snapshots saved nothing
        var r = StateReader(bytes, what: "virtio-net state")
        guard try r.u8() == 1 else { throw .invalid(what: "virtio-net state (version)") }
        let held = try r.bool(), head = try r.u16()
        let received = try r.blob(maximum: VirtioNet.maxFrameLength), hasReceived = try r.bool()
        let transmitted = try r.blob(maximum: VirtioNet.maxFrameLength), hasTransmitted = try r.bool()
        try r.finish()
        heldChain = nil
        if held {
            guard let queue = activation?.queue(VirtioNet.receiveQueue), let chain = try? queue.heldChain(head: head) else {
                throw .invalid(what: "virtio-net state (held receive chain)")
            }
            heldChain = chain
        }
        received.withUnsafeBytes { frame.copyMemory(from: $0) }
        frameLength = hasReceived ? received.count : nil
        transmitted.withUnsafeBytes { txFrame.copyMemory(from: $0) }
        txHeldLength = hasTransmitted ? transmitted.count : nil
        kick.signal()  // deliver / send what was pending once the worker runs
    }
}
