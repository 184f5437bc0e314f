/// The one check of a spec against `SpecLimits`: shapes, ranges and how fields fit together. Files,
/// users and host CPUs are each side's own business (the daemon's image roots, the VMM's open).
public enum SpecValidator {
    /// Throws the first problem, in the API's field order.
    public static func validate(_ spec: VMSpec) throws(SpecError) {
        guard spec.version == VMSpec.currentVersion else {
            throw SpecError("version", " must be \(VMSpec.currentVersion) (this VMM's spec format), got \(spec.version)")
        }
        try validateBoot(spec.boot)
        try validateShape(spec.machine)
        try validateDevices(spec.devices, memoryBytes: spec.machine.memoryBytes)
        try validateConsole(spec.console, spec.control)
        try validateResources(spec.resources, memoryBytes: spec.machine.memoryBytes)
        if spec.isolation.group != nil && spec.isolation.user == nil {
            throw SpecError("isolation.group", " needs {isolation.user}")
        }
        if spec.isolation.uid != nil && (spec.isolation.user != nil || spec.isolation.group != nil) {
            throw SpecError("isolation.uid", " excludes {isolation.user} and {isolation.group}")
        }
        if spec.isolation.gid != nil && spec.isolation.uid == nil {
            throw SpecError("isolation.gid", " needs {isolation.uid}")
        }
        if let roots = spec.isolation.imageRoots {
            guard roots.count <= 64, roots.allSatisfy({ $0.hasPrefix("/") && $0.utf8.count < 4096 && !$0.utf8.contains(0) }) else {
                throw SpecError("isolation.imageRoots", " must be at most 64 absolute directory paths")
            }
        }
    }

    static func validateBoot(_ boot: VMSpec.BootSource) throws(SpecError) {
        switch boot {
        case let .kernel(kernel):
            guard !kernel.kernel.isEmpty else { throw SpecError("kernel", " must name a kernel image") }
            if let initrd = kernel.initrd, initrd.isEmpty { throw SpecError("initrd", " must name a file") }
            let bytes = kernel.cmdline.utf8.count
            guard bytes < SpecLimits.cmdlineBytes else {
                throw SpecError("cmdline", " is \(bytes) bytes long; the limit is \(SpecLimits.cmdlineBytes - 1)")
            }
            guard !kernel.cmdline.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw SpecError("cmdline", " must not contain control characters")
            }
        case let .restore(directory):
            guard !directory.isEmpty else { throw SpecError("restore", " must name a snapshot directory") }
        }
    }

    /// The vCPU count and guest RAM alone (the VMM checks a snapshot's shape with it too).
    public static func validateShape(_ shape: VMSpec.MachineShape) throws(SpecError) {
        guard SpecLimits.cpus.contains(shape.cpus) else {
            throw SpecError("cpus", " must be between \(SpecLimits.cpus.lowerBound) and \(SpecLimits.cpus.upperBound), got \(shape.cpus)")
        }
        let memory = shape.memoryBytes
        let range = "between \(SpecLimits.minimumMemoryBytes >> 20) and \(SpecLimits.maximumMemoryBytes >> 20) MiB"
        guard memory >= SpecLimits.minimumMemoryBytes else {
            throw SpecError("memoryMiB", " is too small: it must be \(range), got \(describe(memory))")
        }
        guard memory <= SpecLimits.maximumMemoryBytes else {
            throw SpecError("memoryMiB", " is too large: it must be \(range), got \(describe(memory))")
        }
        guard memory % SpecLimits.memoryAlignment == 0 else {
            throw SpecError("memoryMiB", " must be a whole number of 4 KiB pages, got \(describe(memory))")
        }
    }

    static func validateDevices(_ devices: VMSpec.Devices, memoryBytes: Int64) throws(SpecError) {
        // First, so that a long list fails with a count rather than on one of its entries.
        let used = devices.virtioCount
        guard used <= SpecLimits.virtioSlots else {
            var parts = ["\(devices.disks.count) disk(s)", "\(devices.nets.count) NIC(s)"]
            if devices.rng { parts.append("the rng") }
            if devices.vsock != nil { parts.append("vsock") }
            if devices.balloon != nil { parts.append("the balloon") }
            if devices.virtioConsole != nil { parts.append("the virtio console") }
            throw SpecError(devices.nets.isEmpty ? "disks" : "nets",
                            ": \(parts.joined(separator: ", ")) need \(used) virtio slots; the VM has \(SpecLimits.virtioSlots) virtio device slots")
        }
        for index in devices.disks.indices { try validateDisk(index, in: devices.disks) }
        for (index, net) in devices.nets.enumerated() { try validateNet(net, field: "nets[\(index)]") }
        if let vsock = devices.vsock {
            guard SpecLimits.vsockCIDs.contains(vsock.cid) else {
                throw SpecError("vsock", ": cid=\(vsock.cid) is out of range: a guest CID is 3 to 4294967294 (0-2 are reserved)")
            }
            guard !vsock.socket.isEmpty else { throw SpecError("vsock", " needs a socket path") }
            guard vsock.socket.utf8.count <= SpecLimits.vsockSocketPathBytes else {
                throw SpecError("vsock", ": the socket path is too long: \(vsock.socket.utf8.count) bytes; at most \(SpecLimits.vsockSocketPathBytes) (PATH_<port> must fit a Unix socket address)")
            }
        }
        if let balloon = devices.balloon {
            guard balloon.targetBytes % UInt64(SpecLimits.memoryAlignment) == 0 else {
                throw SpecError("balloon", " must be a whole number of 4 KiB pages, got \(balloon.targetBytes) bytes")
            }
            guard memoryBytes >= 0, balloon.targetBytes <= UInt64(memoryBytes) else {
                throw SpecError("balloon", " \(describe(balloon.targetBytes)) is larger than the guest's RAM (\(describe(memoryBytes)))")
            }
        }
        if let console = devices.virtioConsole, console.path.isEmpty {
            throw SpecError("virtioConsole", " needs a path: PATH, file=PATH or socket=PATH")
        }
    }

    static func validateDisk(_ index: Int, in disks: [VMSpec.Disk]) throws(SpecError) {
        let disk = disks[index], field = "disks[\(index)]", earlier = disks[..<index]
        guard !disk.path.isEmpty else { throw SpecError("\(field).path", " must name an image") }
        guard !earlier.contains(where: { $0.path == disk.path || $0.backing == disk.path }) else {
            throw SpecError("\(field).path", ": '\(disk.path)' is attached twice")
        }
        if let backing = disk.backing {
            guard !backing.isEmpty else { throw SpecError("\(field).backing", " must name the base image") }
            guard !earlier.contains(where: { $0.path == backing }) else {
                throw SpecError("\(field).backing", ": '\(backing)' is attached as a disk too; a base must only be read")
            }
            guard backing != disk.path else { throw SpecError("\(field).backing", ": an overlay cannot be its own base") }
            guard !disk.readOnly else {
                throw SpecError("\(field).readOnly", ": an overlay takes the guest's writes; attach the base itself read-only instead")
            }
        }
        if let id = disk.id {
            guard !id.isEmpty, id.utf8.count <= SpecLimits.diskIDBytes,
                  id.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != "," }) else {
                throw SpecError("\(field).id", " must be 1–\(SpecLimits.diskIDBytes) printable ASCII characters")
            }
        }
        let id = disk.serial
        if earlier.contains(where: { $0.serial == id }) {
            throw SpecError("\(field).path", ": two disks have the id '\(id)' (a disk's id defaults to its file name): give each disk a distinct id")
        }
    }

    static func validateNet(_ net: VMSpec.Net, field: String) throws(SpecError) {
        switch (net.mode, net.tap) {
        case (.tap, nil): throw SpecError("\(field).tap", " is missing (the host TAP device for mode tap)")
        case let (.tap, name?):
            let ok = SpecLimits.tapNameBytes.contains(name.utf8.count) && name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E
            }
            guard ok else {
                throw SpecError("\(field).tap", " must be a network interface name (1–15 letters, digits, '-', '_', '.'), got \(JSONValue.string(name).serialized())")
            }
        case (.user, _?): throw SpecError("\(field).tap", " is only for mode tap")
        case (.user, nil): break
        }
        if let mac = net.mac {
            guard let octets = VMSpec.Net.parseMAC(mac) else {
                throw SpecError("\(field).mac", " must be a MAC address XX:XX:XX:XX:XX:XX, got \(JSONValue.string(mac).serialized())")
            }
            guard octets[0] & 1 == 0 else {
                throw SpecError("\(field).mac", " is a multicast address; a NIC needs a unicast one (even first octet)")
            }
        }
        try validatePublishing(net, field: field)
    }

    static func validateConsole(_ console: VMSpec.Console, _ control: VMSpec.Control) throws(SpecError) {
        if let limit = console.logMaxBytes, limit < SpecLimits.minimumConsoleLogBytes {
            throw SpecError("console.logMaxBytes", " must be a size of at least 4K, got \(describe(limit))")
        }
        switch (control.snapshotSignal, control.snapshotDirectory) {
        case (nil, nil): break
        case let (signal?, _?):
            guard SpecLimits.snapshotSignals.contains(signal) else {
                throw SpecError("snapshot.signal", " must be \(SpecLimits.snapshotSignals.joined(separator: " or ")), got '\(signal)'")
            }
        case (_?, nil): throw SpecError("snapshot.signal", " needs {snapshot.directory} (where the snapshots go)")
        case (nil, _?): throw SpecError("snapshot.directory", " needs {snapshot.signal}")
        }
    }

    static func validateResources(_ resources: VMSpec.Resources, memoryBytes: Int64) throws(SpecError) {
        if let weight = resources.cpuWeight, !SpecLimits.cpuWeight.contains(weight) {
            throw SpecError("resources.cpuWeight", " must be between \(SpecLimits.cpuWeight.lowerBound) and \(SpecLimits.cpuWeight.upperBound) (the cgroup cpu.weight range), got \(weight)")
        }
        if let cpuMax = resources.cpuMax {
            let period = SpecLimits.cpuMaxPeriodMicros, quota = SpecLimits.cpuMaxQuotaMicros
            guard quota.contains(cpuMax.quotaMicros) else {
                throw SpecError("resources.cpuMax.quotaMicros", ": the quota must be at least 1ms (between \(quota.lowerBound) and \(quota.upperBound) µs), got \(cpuMax.quotaMicros) µs")
            }
            guard period.contains(cpuMax.periodMicros) else {
                throw SpecError("resources.cpuMax.periodMicros", ": the period must be between 1ms and 1s (\(period.lowerBound) to \(period.upperBound) µs), got \(cpuMax.periodMicros) µs")
            }
        }
        if let limit = resources.memoryMaxBytes {
            let (needed, overflow) = memoryBytes.addingReportingOverflow(SpecLimits.memoryMaxOverheadBytes)
            let largest = SpecLimits.maximumMemoryBytes + SpecLimits.memoryMaxOverheadBytes
            guard limit <= largest else {
                throw SpecError("resources.memoryMaxMiB", " must be at most \(describe(largest)) (the largest guest plus VMM overhead), got \(describe(limit))")
            }
            guard overflow || limit >= needed else {
                throw SpecError("resources.memoryMaxMiB", " \(describe(limit)) is below guest RAM (\(describe(memoryBytes))) plus VMM overhead (\(describe(SpecLimits.memoryMaxOverheadBytes)))")
            }
        }
        if let cpus = resources.cpuAffinity {
            guard !cpus.isEmpty else { throw SpecError("resources.cpuAffinity", " must name at least one CPU") }
            for (index, cpu) in cpus.enumerated() {
                guard SpecLimits.cpuNumbers.contains(cpu) else {
                    throw SpecError("resources.cpuAffinity", " must list CPUs between \(SpecLimits.cpuNumbers.lowerBound) and \(SpecLimits.cpuNumbers.upperBound), got \(cpu)")
                }
                guard !cpus[..<index].contains(cpu) else {
                    throw SpecError("resources.cpuAffinity", " lists CPU \(cpu) twice")
                }
            }
        }
    }

    /// `512 MiB`, `4100 KiB`, `-1 MiB`: sizes in messages.
    static func describe<T: BinaryInteger>(_ bytes: T) -> String {
        let value = Int64(clamping: bytes)
        if value < 0 { return value % (1 << 20) == 0 ? "\(value >> 20) MiB" : "\(value) bytes" }
        return ByteSize.format(UInt64(value))
    }
}

extension VMSpec.Disk {
    /// The serial the guest sees: `id`, or the file name's first 20 bytes.
    public var serial: String {
        if let id { return id }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return String(decoding: name.utf8.prefix(SpecLimits.diskIDBytes), as: UTF8.self)
    }
}

extension VMSpec.Net {
    /// Six colon-separated hex octets, or nil.
    public static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard part.utf8.count == 2, let octet = UInt8(part, radix: 16) else { return nil }
            octets.append(octet)
        }
        return octets
    }
}
