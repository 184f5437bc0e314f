import Devices

extension Machine {
    /// The virtio devices' counters as a JSON object, for the control socket's `status`:
    /// `{"rng":{…},"net":[…],"vsock":{…},"balloon":{…},"console":{…}}` (only devices present).
    /// Asks the balloon driver for fresh memory statistics for the next call.
    public var deviceStatusJSON: String {
        var parts: [String] = []
        var nets: [String] = []
        var blocks = 0
        for slot in virtio.slots {
            let active = slot.transport.isActive
            switch slot.device {
            case let rng as VirtioRNG:
                parts.append("\"rng\":{\"active\":\(active),\"bytes\":\(rng.bytesServed)}")
            case let net as VirtioNet:
                let s = net.statistics
                let mac = net.mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
                nets.append("{\"name\":\"\(slot.name)\",\"mac\":\"\(mac)\",\"active\":\(active),\"rx_packets\":\(s.rxPackets),\"rx_bytes\":\(s.rxBytes),\"tx_packets\":\(s.txPackets),\"tx_bytes\":\(s.txBytes),\"rx_dropped\":\(s.rxDropped),\"tx_dropped\":\(s.txDropped),\"rx_waits\":\(s.rxWaits),\"tx_waits\":\(s.txWaits),\"backend_closed\":\(s.backendClosed)}")
            case let vsock as VirtioVsock:
                let s = vsock.statistics
                parts.append("\"vsock\":{\"active\":\(active),\"cid\":\(vsock.guestCID),\"connections\":\(s.connections),\"host_initiated\":\(s.hostInitiated),\"guest_initiated\":\(s.guestInitiated),\"resets_sent\":\(s.resetsSent),\"resets_received\":\(s.resetsReceived),\"bytes_from_guest\":\(s.bytesFromGuest),\"bytes_to_guest\":\(s.bytesToGuest),\"dropped\":\(s.dropped)}")
            case let balloon as VirtioBalloon:
                let s = balloon.statistics
                let page = VirtioBalloon.pageSize
                var stats = s.guestStatistics.sorted { $0.key < $1.key }.map { tag, value in
                    "\"\(BalloonStatistics.tagNames[tag] ?? "tag_\(tag)")\":\(value)"
                }.joined(separator: ",")
                stats = "{\(stats)}"
                parts.append("\"balloon\":{\"active\":\(active),\"target_mib\":\((UInt64(s.targetPages) * page) >> 20),\"target_pages\":\(s.targetPages),\"actual_pages\":\(s.actualPages),\"actual_mib\":\((UInt64(s.actualPages) * page) >> 20),\"inflated_pages\":\(s.inflatedPages),\"released_pages\":\(s.releasedPages),\"stats_updates\":\(s.statisticsUpdates),\"stats\":\(stats)}")
                balloon.requestStatistics()
            case let console as VirtioConsole:
                let s = console.statistics
                parts.append("\"console\":{\"active\":\(active),\"bytes_out\":\(s.bytesOut),\"bytes_in\":\(s.bytesIn),\"bytes_dropped\":\(s.bytesDropped)}")
            case is VirtioBlock:
                blocks += 1
            default:
                break
            }
        }
        if !nets.isEmpty { parts.append("\"net\":[\(nets.joined(separator: ","))]") }
        if blocks > 0 { parts.append("\"blk\":\(blocks)") }
        return "{\(parts.joined(separator: ","))}"
    }

    /// `balloon <MiB>`: sets how much memory the balloon should take from the guest and tells the
    /// driver (a config-change interrupt). Returns the control socket's JSON reply.
    public func setBalloonTarget(_ argument: String) -> String {
        guard let slot = virtio.slots.first(where: { $0.device is VirtioBalloon }),
              let balloon = slot.device as? VirtioBalloon else {
            return "{\"ok\":false,\"error\":\"this VM has no balloon: start it with --balloon\"}"
        }
        guard let mib = UInt64(argument), mib <= (balloon.guestPages * VirtioBalloon.pageSize) >> 20 else {
            return "{\"ok\":false,\"error\":\"balloon takes a size in MiB between 0 and the guest's RAM (\((balloon.guestPages * VirtioBalloon.pageSize) >> 20))\"}"
        }
        balloon.setTarget(pages: (mib << 20) / VirtioBalloon.pageSize)
        slot.transport.signalConfigChange()
        return "{\"ok\":true,\"balloon_target_mib\":\(mib)}"
    }
}
