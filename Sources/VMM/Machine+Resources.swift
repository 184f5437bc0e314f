import Devices
import KVM
import Memory
#if canImport(Glibc)
import Glibc
#endif

/// The steps of `Machine.init` that are the same for a boot and a restore, in the order it takes them.
extension Machine {
    /// The shape against the shared limits (a VMConfig built without a spec, or from a snapshot).
    static func checkShape(_ config: VMConfig) throws(VMMError) {
        let shape = VMSpec.MachineShape(cpus: config.cpus, memoryBytes: Int64(clamping: config.memoryBytes))
        do {
            try SpecValidator.validateShape(shape)
        } catch {
            throw .invalidConfiguration(error.message(.commandLine))
        }
    }

    /// Every disk's image is usable, and no two disks show the guest the same serial.
    static func checkDisks(_ disks: [DiskSpec]) throws(VMMError) {
        for disk in disks { try disk.validate() }
        var seenIDs = Set<String>()
        for disk in disks where !seenIDs.insert(disk.id).inserted {
            throw .invalidConfiguration("two disks have the id '\(disk.id)': give each --disk a distinct id=NAME")
        }
    }

    /// /dev/kvm with the capabilities Vireo needs, room for `cpus` vCPUs, and the CPUID it supports.
    static func openKVM(cpus: Int) throws(VMMError) -> (kvm: KVMSystem, supportedCPUID: [CPUIDEntry]) {
        if let host = KVMPrewarm.take() {
            guard cpus <= host.kvm.maxVCPUs else {
                throw .invalidConfiguration("--cpus \(cpus) exceeds this host's KVM limit of \(host.kvm.maxVCPUs) vCPUs")
            }
            return host
        }
        let kvm: KVMSystem
        do {
            // VIREO_KVM_DEVICE lets tests point at a missing device; users never need it.
            let devicePath = getenv("VIREO_KVM_DEVICE").map { String(cString: $0) } ?? "/dev/kvm"
            kvm = try KVMSystem(path: devicePath)
            try kvm.requireCapabilities()
        } catch {
            throw .kvm(error.description)
        }
        guard cpus <= kvm.maxVCPUs else {
            throw .invalidConfiguration("--cpus \(cpus) exceeds this host's KVM limit of \(kvm.maxVCPUs) vCPUs")
        }
        do {
            return (kvm, try kvm.supportedCPUID())
        } catch {
            throw .kvm(error.description)
        }
    }

    /// The virtio devices the configuration asks for, in slot order: disks, rng, NICs, then the optional ones.
    static func virtioDevices(_ config: VMConfig, memory: GuestMemory) throws(VMMError) -> VirtioDevices {
        let virtio = VirtioDevices(memory: memory)
        for (index, disk) in config.disks.enumerated() {
            let backend: any BlockBackend
            do {
                if let base = disk.backing {
                    backend = try OverlayBlockBackend(path: disk.path, basePath: base)
                } else {
                    backend = try FileBlockBackend(path: disk.path, readOnly: disk.readOnly)
                }
            } catch {
                throw .invalidConfiguration("disk image \(disk.path): \(error)")
            }
            try virtio.add(VirtioBlock(backend: backend, serial: disk.id), name: "virtio-blk\(index)")
        }
        if config.rng { try virtio.add(VirtioRNG(), name: "virtio-rng") }
        if !config.nets.isEmpty { try NetworkDevices.add(config.nets, to: virtio) }
        try OptionalDevices.add(config, to: virtio)
        return virtio
    }

    /// The KVM VM with guest RAM in its memory slots, its in-kernel interrupt controllers, and the
    /// PIT when `pit`. A warm-pool VMM made the VM ahead of the request (KVMPrewarm.prepareVM), with
    /// the slots too when guest RAM was mapped over the ranges it registered. Also returned: the
    /// vCPUs it made ahead with the VM (ids 0, 1, …; none otherwise).
    static func createVM(_ kvm: KVMSystem, memory: GuestMemory, pit: Bool) throws(VMMError) -> (VirtualMachine, [VCPU]) {
        do {
            if let (vm, slotsReady, vcpus) = KVMPrewarm.takeVM(for: kvm, memory: memory) {
                if !slotsReady { try registerSlots(vm, memory.regions) }
                if pit { try vm.createPIT2() }
                return (vm, vcpus)
            }
            let vm = try createPreparedVM(kvm)
            try registerSlots(vm, memory.regions)
            try vm.createIRQChip()
            if pit { try vm.createPIT2() }
            return (vm, [])
        } catch {
            throw .kvm(error.description)
        }
    }

    /// Registers guest RAM, one slot per region, in slot order. Before KVM_CREATE_IRQCHIP: the
    /// irqchip leaves an SRCU grace period in flight (its I/O bus changes), and a slot registered
    /// after it waits for that to end — 5–10 ms on this host, 0.1–0.3 ms before it.
    static func registerSlots(_ vm: VirtualMachine, _ regions: [GuestMemoryRegion]) throws(KVMError) {
        for (slot, region) in regions.enumerated() {
            try vm.setMemoryRegion(slot: UInt32(slot), guestAddress: region.guestBase, size: region.size, host: region.host)
        }
    }

    /// A new VM with the two pages VT-x needs for real mode, in the MMIO hole away from RAM; its
    /// memory slots and irqchip come next, in that order (`registerSlots`).
    static func createPreparedVM(_ kvm: KVMSystem) throws(KVMError) -> VirtualMachine {
        let vm = try kvm.createVM()
        try vm.setTSSAddress(0xFFFB_D000)
        try vm.setIdentityMapAddress(0xFFFB_C000)
        return vm
    }

    /// Puts the legacy devices on the port bus and the virtio devices on the MMIO bus, then freezes both.
    static func register(_ devices: LegacyDevices, _ virtio: VirtioDevices, portBus: Bus, mmioBus: Bus,
                         vm: VirtualMachine) throws(VMMError) {
        do {
            try devices.register(on: portBus)
        } catch {
            throw .invalidConfiguration("device layout: \(error)")
        }
        try virtio.register(on: mmioBus, vm: vm)
        portBus.freeze()
        mmioBus.freeze()
    }
}
