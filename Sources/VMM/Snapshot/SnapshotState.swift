import Devices
import KVM

/// Everything in a snapshot except guest RAM: config, CPUID, vCPU, VM and device state.
///
/// On disk (`state.bin`): magic "VIREOSNP", format version (u32), body length (u64), body, CRC-32
/// of the body. Guest RAM lives beside it in `memory.bin`, a sparse file holding each RAM region at
/// `fileOffset`; only pages the guest ever touched are written.
struct SnapshotState: Equatable {
    static let magic = Array("VIREOSNP".utf8)
    /// 3: disks carry their overlay's base image. 4: each virtio slot names its device (type, name,
    /// configuration) so a restore binding a different device is refused. Versions 2 and 3 still
    /// restore, checked only by device count (they recorded no identities).
    static let formatVersion: UInt32 = 4
    static let readableVersions: ClosedRange<UInt32> = 2...4
    static let stateFile = "state.bin"
    static let memoryFile = "memory.bin"

    struct Region: Equatable {
        var guestBase: UInt64
        var size: UInt64
        var fileOffset: UInt64
    }

    var kernelPath: String
    var commandLine: String
    var cpus: Int
    var memoryBytes: UInt64
    var debugExitPort: UInt16?
    var hostKind: String
    var regions: [Region]
    var cpuid: [[CPUIDEntry]]
    var vcpus: [VCPUState]
    var vm: VMState
    var serial: [UInt8]
    var i8042: [UInt8]
    var rtc: [UInt8]
    /// Devices to recreate on restore, and each virtio device's transport + device state (by slot order).
    var disks: [DiskSpec] = []
    var rng = false
    var nets: [NetSpec] = []
    var virtio: [[UInt8]] = []
    /// Which device each entry of `virtio` belongs to; empty for snapshots before version 4.
    var virtioIdentities: [VirtioSlotIdentity] = []

    /// Version 4 and later name each virtio slot's device; older snapshots only count them.
    var formatIdentifiesDevices: Bool { !virtio.isEmpty ? !virtioIdentities.isEmpty : true }

    var memoryFileSize: UInt64 { regions.map { $0.fileOffset + $0.size }.max() ?? 0 }

    func encoded() -> [UInt8] {
        var w = StateWriter()
        w.string(kernelPath); w.string(commandLine); w.u32(UInt32(cpus)); w.u64(memoryBytes)
        w.bool(debugExitPort != nil); w.u16(debugExitPort ?? 0); w.string(hostKind)
        w.u32(UInt32(regions.count))
        for region in regions { w.u64(region.guestBase); w.u64(region.size); w.u64(region.fileOffset) }
        w.u32(UInt32(cpuid.count))
        for table in cpuid {
            w.u32(UInt32(table.count))
            for e in table {
                for value in [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] { w.u32(value) }
            }
        }
        w.u32(UInt32(vcpus.count))
        for vcpu in vcpus {
            w.u32(UInt32(vcpu.blobs.count))
            for blob in vcpu.blobs { w.blob(blob) }
            w.u32(UInt32(vcpu.msrs.count))
            for msr in vcpu.msrs { w.u32(msr.index); w.u64(msr.value) }
        }
        w.u32(UInt32(vm.blobs.count))
        for blob in vm.blobs { w.blob(blob) }
        w.blob(serial); w.blob(i8042); w.blob(rtc)
        w.u32(UInt32(disks.count))
        for disk in disks { w.string(disk.path); w.bool(disk.readOnly); w.string(disk.id); w.string(disk.backing ?? "") }
        w.bool(rng)
        w.u32(UInt32(nets.count))
        for net in nets {
            switch net.backend {
            case .user: w.u8(0); w.string("")
            case let .tap(name): w.u8(1); w.string(name)
            }
            w.blob(net.mac)
        }
        w.u32(UInt32(virtio.count))
        for state in virtio { w.blob(state) }
        w.u32(UInt32(virtioIdentities.count))
        for identity in virtioIdentities { w.u32(identity.type); w.string(identity.name); w.string(identity.configuration) }
        let body = w.bytes
        var file = SnapshotState.magic
        var header = StateWriter()
        header.u32(SnapshotState.formatVersion)
        header.u64(UInt64(body.count))
        file += header.bytes + body
        var trailer = StateWriter()
        trailer.u32(CRC32.checksum(body[...]))
        return file + trailer.bytes
    }

    /// Parses and verifies `state.bin`; every count is bounded (the file is untrusted input).
    static func decode(_ file: [UInt8]) throws(SnapshotError) -> SnapshotState {
        let headerSize = magic.count + 12
        guard file.count >= headerSize + 4, Array(file[0..<magic.count]) == magic else {
            throw .notASnapshot
        }
        var header = StateReader(Array(file[magic.count..<headerSize]), what: "the snapshot header")
        let version = (try? header.u32()) ?? 0
        guard readableVersions.contains(version) else { throw .version(found: version, supported: formatVersion) }
        let bodyLength = (try? header.u64()) ?? 0
        guard bodyLength == UInt64(file.count - headerSize - 4) else { throw .truncated }
        let body = file[headerSize..<(file.count - 4)]
        var trailer = StateReader(Array(file[(file.count - 4)...]), what: "the checksum")
        guard let expected = try? trailer.u32(), expected == CRC32.checksum(body) else { throw .checksum }
        do {
            return try parse(Array(body), version: version)
        } catch {
            throw .corrupt(error.description)
        }
    }

    /// Guest-physical addresses a region may reach (x86-64's 52-bit physical address space).
    static let maximumGuestAddress: UInt64 = 1 << 52

    private static func parse(_ body: [UInt8], version: UInt32) throws(StateError) -> SnapshotState {
        var r = StateReader(body, what: "the snapshot")
        let kernelPath = try r.string(maximum: 4096)
        let commandLine = try r.string(maximum: 1 << 16)
        let cpus = Int(try r.u32())
        let memoryBytes = try r.u64()
        let hasDebugExit = try r.bool()
        let debugExitPort = try r.u16()
        let hostKind = try r.string(maximum: 64)
        guard (1...VMConfig.maxCPUs).contains(cpus) else { throw .invalid(what: "the vCPU count") }
        let regionCount = Int(try r.u32())
        guard (1...4).contains(regionCount) else { throw .invalid(what: "the memory regions") }
        var regions: [Region] = []
        for _ in 0..<regionCount {
            let region = Region(guestBase: try r.u64(), size: try r.u64(), fileOffset: try r.u64())
            guard region.size > 0, region.size % 4096 == 0, region.fileOffset % 4096 == 0,
                  region.guestBase % 4096 == 0, region.size <= VMConfig.maximumMemory,
                  region.fileOffset <= VMConfig.maximumMemory,
                  region.guestBase <= SnapshotState.maximumGuestAddress - region.size,
                  !regions.contains(where: { $0.guestBase < region.guestBase + region.size && region.guestBase < $0.guestBase + $0.size })
            else { throw .invalid(what: "a memory region") }
            regions.append(region)
        }
        guard memoryBytes <= VMConfig.maximumMemory else { throw .invalid(what: "the memory size") }
        let tableCount = Int(try r.u32())
        guard tableCount == cpus else { throw .invalid(what: "the CPUID tables") }
        var cpuid: [[CPUIDEntry]] = []
        for _ in 0..<tableCount {
            let count = Int(try r.u32())
            guard count <= 256 else { throw .invalid(what: "a CPUID table") }
            var table: [CPUIDEntry] = []
            for _ in 0..<count {
                table.append(CPUIDEntry(function: try r.u32(), index: try r.u32(), flags: try r.u32(),
                                        eax: try r.u32(), ebx: try r.u32(), ecx: try r.u32(), edx: try r.u32()))
            }
            cpuid.append(table)
        }
        let vcpuCount = Int(try r.u32())
        guard vcpuCount == cpus else { throw .invalid(what: "the vCPU states") }
        var vcpus: [VCPUState] = []
        for _ in 0..<vcpuCount {
            let blobCount = Int(try r.u32())
            guard blobCount == VCPUStateKind.allCases.count else { throw .invalid(what: "a vCPU state") }
            var blobs: [[UInt8]] = []
            for _ in 0..<blobCount { blobs.append(try r.blob(maximum: 1 << 20)) }
            let msrCount = Int(try r.u32())
            guard msrCount <= 4096 else { throw .invalid(what: "the MSRs") }
            var msrs: [MSRValue] = []
            for _ in 0..<msrCount { msrs.append(MSRValue(index: try r.u32(), value: try r.u64())) }
            vcpus.append(VCPUState(blobs: blobs, msrs: msrs))
        }
        let vmBlobCount = Int(try r.u32())
        guard vmBlobCount == VMStateKind.allCases.count else { throw .invalid(what: "the VM state") }
        var vmBlobs: [[UInt8]] = []
        for _ in 0..<vmBlobCount { vmBlobs.append(try r.blob(maximum: 1 << 20)) }
        let serial = try r.blob(maximum: 4096), i8042 = try r.blob(maximum: 4096), rtc = try r.blob(maximum: 4096)
        let diskCount = Int(try r.u32())
        guard diskCount <= 16 else { throw .invalid(what: "the disks") }
        var disks: [DiskSpec] = []
        for _ in 0..<diskCount {
            var disk = DiskSpec(path: try r.string(maximum: 4096), readOnly: try r.bool(), id: try r.string(maximum: 20))
            if version >= 3 {
                let backing = try r.string(maximum: 4096)
                disk.backing = backing.isEmpty ? nil : backing
            }
            disks.append(disk)
        }
        let rng = try r.bool()
        let netCount = Int(try r.u32())
        guard netCount <= 8 else { throw .invalid(what: "the NICs") }
        var nets: [NetSpec] = []
        for _ in 0..<netCount {
            let kind = try r.u8()
            let tapName = try r.string(maximum: 15)
            let mac = try r.blob(maximum: 6)
            guard mac.count == 6, kind <= 1 else { throw .invalid(what: "a NIC") }
            nets.append(NetSpec(backend: kind == 0 ? .user : .tap(tapName), mac: mac))
        }
        let virtioCount = Int(try r.u32())
        guard virtioCount <= 16 else { throw .invalid(what: "the virtio devices") }
        var virtio: [[UInt8]] = []
        for _ in 0..<virtioCount { virtio.append(try r.blob(maximum: 1 << 22)) }
        var identities: [VirtioSlotIdentity] = []
        if version >= 4 {
            guard Int(try r.u32()) == virtioCount else { throw .invalid(what: "the virtio device identities") }
            for _ in 0..<virtioCount {
                identities.append(VirtioSlotIdentity(type: try r.u32(), name: try r.string(maximum: 64),
                                                     configuration: try r.string(maximum: 256)))
            }
        }
        try r.finish()
        return SnapshotState(kernelPath: kernelPath, commandLine: commandLine, cpus: cpus, memoryBytes: memoryBytes,
                             debugExitPort: hasDebugExit ? debugExitPort : nil, hostKind: hostKind, regions: regions,
                             cpuid: cpuid, vcpus: vcpus, vm: VMState(blobs: vmBlobs),
                             serial: serial, i8042: i8042, rtc: rtc, disks: disks, rng: rng, nets: nets, virtio: virtio,
                             virtioIdentities: identities)
    }
}

/// Why a snapshot cannot be taken or restored; each names what is wrong.
public enum SnapshotError: Error, Equatable, CustomStringConvertible {
    case notASnapshot
    case version(found: UInt32, supported: UInt32)
    case truncated
    case checksum
    case corrupt(String)
    case memoryFile(String)
    case missingCPUFeatures(String)
    case notPaused
    case io(String)

    public var description: String {
        switch self {
        case .notASnapshot: return "not a Vireo snapshot (state.bin has no VIREOSNP header)"
        case let .version(found, supported):
            return "snapshot format version \(found) is not supported (this Vireo reads version \(supported))"
        case .truncated: return "snapshot state.bin is truncated"
        case .checksum: return "snapshot state.bin fails its checksum (corrupted or modified)"
        case let .corrupt(why): return "snapshot state is corrupt: \(why)"
        case let .memoryFile(why): return "snapshot memory: \(why)"
        case let .missingCPUFeatures(list): return "this host's CPU lacks features the snapshot needs: \(list)"
        case .notPaused: return "the VM must be paused before a snapshot (send 'pause' first)"
        case let .io(why): return why
        }
    }
}
