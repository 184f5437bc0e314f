// virtio-vsock's own snapshot state: the receive chain it held and the connection table. Host
// sockets cannot outlive the VMM process, so a restored device tells the guest each saved
// connection is gone (RST) at once, instead of leaving its sockets waiting for a peer that no
// longer exists; guest programs then reconnect.

extension VirtioVsock {
    public func snapshotState() -> [UInt8] {
        var w = StateWriter()
        w.u8(1)
        w.bool(heldChain != nil); w.u16(heldChain?.head ?? 0)
        let saved = connections.values.filter { $0.state == .established || $0.state == .requesting }
        w.u32(UInt32(saved.count))
        for connection in saved { w.u32(connection.localPort); w.u32(connection.peerPort) }
        return w.bytes
    }

    public func restoreSnapshotState(_ bytes: [UInt8], activation: VirtioActivation?) throws(StateError) {
        guard !bytes.isEmpty else { return }  // version 3 snapshots saved nothing
        var r = StateReader(bytes, what: "virtio-vsock state")
        guard try r.u8() == 1 else { throw .invalid(what: "virtio-vsock state (version)") }
        let held = try r.bool(), head = try r.u16()
        let count = Int(try r.u32())
        guard count <= VirtioVsock.maxConnections else { throw .invalid(what: "virtio-vsock state (connections)") }
        var ports: [(UInt32, UInt32)] = []
        for _ in 0..<count { ports.append((try r.u32(), try r.u32())) }
        try r.finish()
        heldChain = nil
        if held {
            guard let queue = activation?.queue(VirtioVsock.receiveQueue), let chain = try? queue.heldChain(head: head) else {
                throw .invalid(what: "virtio-vsock state (held receive chain)")
            }
            heldChain = chain
        }
        guard activation != nil else { return }
        for (local, peer) in ports { enqueue(Control(op: .reset, localPort: local, peerPort: peer)) }
        kick.signal()
    }
}
