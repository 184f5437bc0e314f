import Devices
import KVM
import Memory
import X86

/// What an origin needs to make the vCPUs.
struct MachineParts {
    let vm: VirtualMachine
    let memory: GuestMemory
    let config: VMConfig
    let commandLine: String
    let hostCPUID: [CPUIDEntry]
    let hostKind: HostKind
    /// vCPUs made ahead with the VM (a warm-pool VMM's vCPU 0), by id.
    let madeVCPUs: [VCPU]

    /// vCPU `index`: the one made ahead, or a new one.
    func vcpu(_ index: Int) throws(KVMError) -> VCPU {
        index < madeVCPUs.count ? madeVCPUs[index] : try vm.createVCPU(id: UInt32(index))
    }
}

/// Where a machine's guest comes from: the steps of `Machine.init` that differ between a fresh
/// boot and a snapshot restore, each path in one type of its own.
protocol MachineOrigin {
    /// Guest RAM: new and empty, or the snapshot's mapped copy-on-write.
    func guestMemory(config: VMConfig, hostCPUID: [CPUIDEntry]) throws(VMMError) -> GuestMemory
    /// Whether the VM is made with the in-kernel PIT (a snapshot brings its own when it saved one).
    func createsPIT(_ config: VMConfig, kvm: KVMSystem, hostCPUID: [CPUIDEntry]) -> Bool
    /// The command line the guest gets (a restored guest booted with its own long ago).
    func commandLine(_ adapted: String, deviceArguments: [String]) -> String
    /// The vCPUs, in order, each with the CPUID table it was given.
    func createVCPUs(_ parts: MachineParts) throws(VMMError) -> [(vcpu: VCPU, cpuid: [CPUIDEntry])]
    /// Device state the guest expects (nothing for a fresh boot).
    func loadDeviceState(legacy: LegacyDevices, virtio: VirtioDevices) throws(VMMError)
}

/// A kernel (and initrd) loaded into new guest RAM, vCPU 0 at its entry point.
struct FreshBoot: MachineOrigin {
    /// The images, opened (and checked) before anything is built and read while booting: straight
    /// into guest RAM where the format allows, so the VMM never holds a 17 MiB vmlinux whole.
    let kernel: OpenedFile
    let initrd: OpenedFile?

    /// Opens the images after checking the shape, so a bad size fails first.
    init(config: VMConfig) throws(VMMError) {
        try Machine.checkShape(config)
        kernel = try FileLoader.open(config.kernelPath, what: "kernel")
        initrd = try config.initrdPath.map { (path) throws(VMMError) in try FileLoader.open(path, what: "initrd") }
    }

    func guestMemory(config: VMConfig, hostCPUID: [CPUIDEntry]) throws(VMMError) -> GuestMemory {
        do {
            return try GuestMemory(layout: X86MemoryLayout.regions(ramSize: config.memoryBytes))
        } catch {
            throw .invalidConfiguration("cannot allocate \(ByteSize.format(config.memoryBytes)) of guest memory: \(error)")
        }
    }

    func commandLine(_ adapted: String, deviceArguments: [String]) -> String {
        ([adapted] + deviceArguments).joined(separator: " ")
    }

    func createsPIT(_ config: VMConfig, kvm: KVMSystem, hostCPUID: [CPUIDEntry]) -> Bool {
        PITPolicy.wanted(config.pit, kvm: kvm, hostCPUID: hostCPUID)
    }

    func createVCPUs(_ parts: MachineParts) throws(VMMError) -> [(vcpu: VCPU, cpuid: [CPUIDEntry])] {
        let config = parts.config
        let entry = try BootLoader.load(kernel: kernel, kernelPath: config.kernelPath, initrd: initrd,
                                        initrdPath: config.initrdPath, commandLine: parts.commandLine, cpus: config.cpus,
                                        protocol: config.bootProtocol, memory: parts.memory)
        var created: [(vcpu: VCPU, cpuid: [CPUIDEntry])] = []
        do {
            for index in 0..<config.cpus {
                let vcpu = try parts.vcpu(index)
                let table = CPUIDPolicy.entries(supported: parts.hostCPUID, index: UInt32(index), count: UInt32(config.cpus),
                                                tscKHz: vcpu.tscKHz(), hypercallsWork: parts.hostKind != .pvm)
                try vcpu.setCPUID(table)
                created.append((vcpu, table))
            }
            for (index, (vcpu, _)) in created.enumerated() {
                for msr in BootMSRs.initial { try? vcpu.setMSRs([msr]) }  // optional ones may be absent
                if index == 0 {
                    try vcpu.configureLocalInterrupts()
                    try vcpu.resetFPU()
                    let state = entry.cpuState(basedOn: try vcpu.specialRegisters())
                    try vcpu.setSpecialRegisters(state.specialRegisters)
                    try vcpu.setRegisters(state.registers)
                }
            }
            return created
        } catch {
            throw .kvm("vCPU setup: \(error)")
        }
    }

    func loadDeviceState(legacy: LegacyDevices, virtio: VirtioDevices) throws(VMMError) {}
}

/// A snapshot continued where it was taken: its RAM, VM, vCPU and device state.
struct SnapshotRestore: MachineOrigin {
    let image: SnapshotImage

    init(directory: String) throws(VMMError) {
        do {
            image = try SnapshotImage.open(directory)
        } catch {
            throw .boot("snapshot \(directory): \(error)")
        }
    }

    /// The snapshot as descriptors the daemon opened (a warm-pool VMM).
    init(files: SnapshotFiles) throws(VMMError) {
        do {
            image = try SnapshotImage.open(files)
        } catch {
            throw .boot("snapshot \(files.directory): \(error)")
        }
    }

    /// The machine the snapshot fixes (shape, command line, NICs, rng), with `options`' run-time
    /// settings; disks may be overridden (each clone its own copy) if there are as many.
    func configuration(_ options: VMConfig) throws(VMMError) -> VMConfig {
        let state = image.state
        var config = options
        config.kernelPath = state.kernelPath
        config.cmdline = state.commandLine
        config.cpus = state.cpus
        config.memoryBytes = state.memoryBytes
        config.debugExitPort = state.debugExitPort
        config.adaptCommandLineToHost = false
        if options.disks.isEmpty {
            config.disks = state.disks
        } else if options.disks.count != state.disks.count {
            throw .invalidConfiguration("the snapshot has \(state.disks.count) disk(s); --disk given \(options.disks.count) time(s)")
        }
        config.rng = state.rng
        config.nets = state.nets
        return config
    }

    func guestMemory(config: VMConfig, hostCPUID: [CPUIDEntry]) throws(VMMError) -> GuestMemory {
        do {
            try CPUFeatureCheck.verify(snapshot: image.state.cpuid.first ?? [], host: hostCPUID)
            return try image.mapMemory()
        } catch {
            throw .boot("snapshot: \(error)")
        }
    }

    func commandLine(_ adapted: String, deviceArguments: [String]) -> String { adapted }

    /// `VirtualMachine.restoreState` creates it when the snapshot saved PIT state.
    func createsPIT(_ config: VMConfig, kvm: KVMSystem, hostCPUID: [CPUIDEntry]) -> Bool { false }

    func createVCPUs(_ parts: MachineParts) throws(VMMError) -> [(vcpu: VCPU, cpuid: [CPUIDEntry])] {
        var created: [(vcpu: VCPU, cpuid: [CPUIDEntry])] = []
        do {
            try parts.vm.restoreState(image.state.vm)
            for index in 0..<parts.config.cpus {
                let vcpu = try parts.vcpu(index)
                let table = image.state.cpuid[index]
                try vcpu.setCPUID(table)
                created.append((vcpu, table))
            }
            for (index, (vcpu, _)) in created.enumerated() { try vcpu.restoreState(image.state.vcpus[index]) }
        } catch {
            throw .kvm("vCPU setup: \(error)")
        }
        return created
    }

    func loadDeviceState(legacy: LegacyDevices, virtio: VirtioDevices) throws(VMMError) {
        let state = image.state
        if state.formatIdentifiesDevices {
            try VirtioSlotIdentity.check(saved: state.virtioIdentities, configured: virtio.identities)
        }
        do {
            try legacy.serial.restoreState(state.serial)
            try legacy.i8042.restoreState(state.i8042)
            try legacy.rtc.restoreState(state.rtc)
            guard state.virtio.count == virtio.slots.count else {
                throw StateError.invalid(what: "the virtio devices (\(state.virtio.count) saved, \(virtio.slots.count) configured)")
            }
            for (slot, saved) in zip(virtio.slots, state.virtio) { try slot.transport.restoreState(saved) }
        } catch {
            throw .boot("snapshot: \(error)")
        }
    }
}
