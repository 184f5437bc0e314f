import KVM
import Memory

/// The entry protocol used to start a kernel.
public enum BootProtocol: Equatable, Sendable {
    /// 64-bit Linux boot protocol: long mode, RSI = zero page.
    case linux64
    /// Xen PVH: 32-bit protected mode, EBX = hvm_start_info.
    case pvh
}

/// Why `X86Boot.prepare` failed.
public enum X86BootError: Error, Equatable, Sendable, CustomStringConvertible {
    case kernel(KernelImageError)
    case setup(BootSetupError)
    case protocolUnavailable(BootProtocol)

    public var description: String {
        switch self {
        case let .kernel(error): return error.description
        case let .setup(error): return error.description
        case .protocolUnavailable(.pvh): return "kernel has no PVH entry (XEN_ELFNOTE_PHYS32_ENTRY note)"
        case .protocolUnavailable(.linux64): return "kernel has no 64-bit entry (a 32-bit ELF needs a PVH note)"
        }
    }
}

/// The outcome of `X86Boot.prepare`: what was loaded and how to start the boot CPU.
public struct PreparedBoot: Equatable, Sendable {
    public var kernel: LoadedKernel
    public var initrd: Initrd?
    public var commandLine: BootCommandLine
    public var bootProtocol: BootProtocol
    /// The boot CPU's entry point under `bootProtocol`.
    public var entry: UInt64

    /// Register state for the boot CPU; pass KVM_GET_SREGS's result so APIC base and the like survive.
    public func cpuState(basedOn current: SpecialRegisters) -> CPUBootState {
        switch bootProtocol {
        case .linux64: return .linux64(entry: entry, basedOn: current)
        case .pvh: return .pvh(entry: UInt32(entry), basedOn: current)
        }
    }
}

/// One-call x86 boot preparation: kernel, initrd, command line, zero page or PVH start info, GDT, page tables, MP table.
public enum X86Boot {
    /// Loads everything into `memory`. `bootProtocol` nil picks `defaultProtocol(for:)`.
    /// Application processors need no state here: they start through INIT/SIPI from the guest.
    public static func prepare(kernel image: UnsafeRawBufferPointer, initrd initrdImage: UnsafeRawBufferPointer?,
                               commandLine text: String, cpuCount: Int, bootProtocol requested: BootProtocol? = nil,
                               into memory: GuestMemory) throws(X86BootError) -> PreparedBoot {
        let loaded: LoadedKernel
        do {
            loaded = try KernelImage(parsing: image).load(image, into: memory)
        } catch {
            throw .kernel(error)
        }
        return try finish(loaded, initrd: initrdImage.map(InMemoryKernelSource.init), commandLine: text,
                          cpuCount: cpuCount, bootProtocol: requested, into: memory)
    }

    /// The same from files read as needed (`KernelSource`): neither file is ever held whole in the
    /// VMM; an ELF kernel's segments and the initrd are read straight into guest RAM.
    public static func prepare(kernel: some KernelSource, initrd: (any KernelSource)?,
                               commandLine text: String, cpuCount: Int, bootProtocol requested: BootProtocol? = nil,
                               into memory: GuestMemory) throws(X86BootError) -> PreparedBoot {
        let loaded: LoadedKernel
        do {
            loaded = try KernelImage.load(from: kernel, into: memory)
        } catch {
            throw .kernel(error)
        }
        return try finish(loaded, initrd: initrd, commandLine: text, cpuCount: cpuCount, bootProtocol: requested, into: memory)
    }

    /// Entry point, command line, initrd and the boot structures, for a kernel already in guest RAM.
    private static func finish(_ loaded: LoadedKernel, initrd initrdSource: (any KernelSource)?, commandLine text: String,
                               cpuCount: Int, bootProtocol requested: BootProtocol?,
                               into memory: GuestMemory) throws(X86BootError) -> PreparedBoot {
        let chosen = requested ?? defaultProtocol(for: loaded)
        let entry: UInt64
        switch chosen {
        case .linux64:
            guard let entry64 = loaded.entry64 else { throw .protocolUnavailable(.linux64) }
            entry = entry64
        case .pvh:
            guard let pvh = loaded.pvhEntry else { throw .protocolUnavailable(.pvh) }
            entry = UInt64(pvh)
        }
        do {
            let commandLine = try BootCommandLine.write(text, limit: loaded.commandLineLimit, into: memory)
            let initrd = try initrdSource.map { (source) throws(BootSetupError) in try Initrd.load(from: source, for: loaded, into: memory) }
            let memoryMap = try E820Map.entries(for: memory)
            switch chosen {
            case .linux64:
                try BootParams(setupHeader: loaded.setupHeader, commandLine: commandLine, initrd: initrd,
                               memoryMap: memoryMap).write(into: memory)
            case .pvh:
                try PVHStartInfo(commandLine: commandLine, initrd: initrd, memoryMap: memoryMap).write(into: memory)
            }
            try CPUBootState.writeTables(into: memory)
            try MPTable(cpuCount: cpuCount).write(into: memory)
            return PreparedBoot(kernel: loaded, initrd: initrd, commandLine: commandLine, bootProtocol: chosen, entry: entry)
        } catch {
            throw .setup(error)
        }
    }

    /// Linux kernels (bzImage, or an ELF with a "Linux" note) take the 64-bit boot protocol; other
    /// ELFs take PVH when they have the note (their e_entry may be 32-bit code), else e_entry in long mode.
    public static func defaultProtocol(for loaded: LoadedKernel) -> BootProtocol {
        if (loaded.format == .bzImage || loaded.isLinux) && loaded.entry64 != nil { return .linux64 }
        if loaded.pvhEntry != nil { return .pvh }
        return loaded.entry64 != nil ? .linux64 : .pvh
    }

    /// Array convenience.
    public static func prepare(kernel image: [UInt8], initrd initrdImage: [UInt8]?, commandLine text: String,
                               cpuCount: Int, bootProtocol requested: BootProtocol? = nil,
                               into memory: GuestMemory) throws(X86BootError) -> PreparedBoot {
        try withBootBytes(image) { (kernelBytes) throws(X86BootError) -> PreparedBoot in
            guard let initrdImage else {
                return try prepare(kernel: kernelBytes, initrd: nil, commandLine: text, cpuCount: cpuCount,
                                   bootProtocol: requested, into: memory)
            }
            return try withBootBytes(initrdImage) { (initrdBytes) throws(X86BootError) -> PreparedBoot in
                try prepare(kernel: kernelBytes, initrd: initrdBytes, commandLine: text, cpuCount: cpuCount,
                            bootProtocol: requested, into: memory)
            }
        }
    }
}
