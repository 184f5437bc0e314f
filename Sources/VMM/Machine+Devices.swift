import Devices

extension Machine {
    /// The virtio devices' counters for the control socket's `status`, each as the device reports
    /// itself: `{"rng":{…},"vsock":{…},"balloon":{…},"console":{…},"net":[…],"blk":N}` (only devices present).
    public var deviceStatus: JSONValue {
        var singles: [(key: String, value: JSONValue)] = []
        var lists: [(key: String, items: [JSONValue])] = []
        var counts: [(key: String, count: Int)] = []
        for slot in virtio.slots {
            guard let device = slot.device as? any StatusReporting else { continue }
            let kind = type(of: device)
            let active: (key: String, value: JSONValue) = ("active", .bool(slot.transport.isActive))
            switch kind.statusGrouping {
            case .single:
                singles.append((kind.statusKey, .object([active] + device.statusFields())))
            case .list:
                let entry = JSONValue.object([("name", .string(slot.name)), active] + device.statusFields())
                if let index = lists.firstIndex(where: { $0.key == kind.statusKey }) {
                    lists[index].items.append(entry)
                } else {
                    lists.append((kind.statusKey, [entry]))
                }
            case .count:
                if let index = counts.firstIndex(where: { $0.key == kind.statusKey }) {
                    counts[index].count += 1
                } else {
                    counts.append((kind.statusKey, 1))
                }
            }
        }
        return .object(singles + lists.map { ($0.key, JSONValue.array($0.items)) } + counts.map { ($0.key, JSONValue.int(Int64($0.count))) })
    }

    /// `status`: what the VMM is doing now, and the isolation `plan` it runs under (if any).
    public func status(isolation plan: IsolationPlan?) -> VMMStatus {
        VMMStatus(state: stateName, vcpus: config.cpus, exits: liveStatistics.counts, devices: deviceStatus,
                  isolation: plan?.status ?? .null, pit: hasPIT)
    }

    /// `balloon <MiB>`: sets how much memory the balloon should take from the guest and tells the
    /// driver (a config-change interrupt).
    public func setBalloonTarget(_ argument: String) -> ControlReply {
        guard let slot = virtio.slots.first(where: { $0.device is VirtioBalloon }),
              let balloon = slot.device as? VirtioBalloon else {
            return .failure("this VM has no balloon: start it with --balloon")
        }
        guard let mib = UInt64(argument), mib <= (balloon.guestPages * VirtioBalloon.pageSize) >> 20 else {
            return .failure("balloon takes a size in MiB between 0 and the guest's RAM (\((balloon.guestPages * VirtioBalloon.pageSize) >> 20))")
        }
        balloon.setTarget(pages: (mib << 20) / VirtioBalloon.pageSize)
        slot.transport.signalConfigChange()
        return ControlReply(ok: true, balloonTargetMiB: mib)
    }
}
