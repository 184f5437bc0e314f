import KVM
import Memory
import X86

/// Where and how the boot vCPU enters the loaded kernel.
enum BootEntry: Equatable {
    /// 64-bit Linux boot protocol (or a flat 64-bit ELF): long mode, boot_params in RSI.
    case linux64(UInt64)
    /// Xen PVH: 32-bit protected mode, hvm_start_info in EBX.
    case pvh(UInt32)

    /// The boot vCPU's registers for this entry, keeping what KVM set up (APIC base etc.).
    func cpuState(basedOn current: SpecialRegisters) -> CPUBootState {
        switch self {
        case let .linux64(address): return CPUBootState.linux64(entry: address, basedOn: current)
        case let .pvh(address): return CPUBootState.pvh(entry: address, basedOn: current)
        }
    }
}

/// Puts the kernel, initrd, command line and boot structures into guest RAM.
enum BootLoader {
    static func load(kernel: [UInt8], kernelPath: String, initrd: [UInt8]?, initrdPath: String?,
                     commandLine: String, cpus: Int, protocol requested: BootProtocol,
                     memory: GuestMemory) throws(VMMError) -> BootEntry {
        let image: KernelImage
        let loaded: LoadedKernel
        do {
            image = try KernelImage(parsing: kernel)
            loaded = try image.load(kernel, into: memory)
        } catch {
            throw .boot("kernel \(kernelPath): \(error)")
        }
        let entry = try chooseEntry(loaded, requested: requested, kernelPath: kernelPath)
        do {
            var initrdPlacement: Initrd?
            if let initrd {
                do {
                    initrdPlacement = try Initrd.load(initrd, for: loaded, into: memory)
                } catch {
                    throw VMMError.boot("initrd \(initrdPath ?? ""): \(error)")
                }
            }
            let line = try BootCommandLine.write(commandLine, limit: loaded.commandLineLimit, into: memory)
            let memoryMap = try E820Map.entries(for: memory)
            switch entry {
            case .linux64:
                try BootParams(setupHeader: loaded.setupHeader, commandLine: line, initrd: initrdPlacement,
                               memoryMap: memoryMap).write(into: memory)
            case .pvh:
                try PVHStartInfo(commandLine: line, initrd: initrdPlacement, memoryMap: memoryMap).write(into: memory)
            }
            try CPUBootState.writeTables(into: memory)
            try MPTable(cpuCount: cpus).write(into: memory)
        } catch let error as VMMError {
            throw error
        } catch {
            throw .boot("boot setup: \(error)")
        }
        return entry
    }

    private static func chooseEntry(_ loaded: LoadedKernel, requested: BootProtocol,
                                    kernelPath: String) throws(VMMError) -> BootEntry {
        switch requested {
        case .linux:
            guard let entry = loaded.entry64 else {
                throw .boot("kernel \(kernelPath) has no 64-bit entry point; try --boot pvh")
            }
            return .linux64(entry)
        case .pvh:
            guard let entry = loaded.pvhEntry else {
                throw .boot("kernel \(kernelPath) has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")
            }
            return .pvh(entry)
        case .auto:
            if loaded.format == .bzImage || loaded.isLinux, let entry = loaded.entry64 { return .linux64(entry) }
            if let entry = loaded.pvhEntry { return .pvh(entry) }
            if let entry = loaded.entry64 { return .linux64(entry) }
            throw .boot("kernel \(kernelPath) has neither a 64-bit nor a PVH entry point")
        }
    }
}
