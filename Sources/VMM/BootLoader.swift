import Memory
import X86

/// Puts the kernel, initrd, command line and boot structures into guest RAM (through X86Boot),
/// with errors that name the user's files.
enum BootLoader {
    static func load(kernel: OpenedFile, kernelPath: String, initrd: OpenedFile?, initrdPath: String?,
                     commandLine: String, cpus: Int, protocol requested: VMM.BootProtocol,
                     memory: GuestMemory) throws(VMMError) -> PreparedBoot {
        let bootProtocol: X86.BootProtocol?
        switch requested {
        case .auto: bootProtocol = nil
        case .linux: bootProtocol = .linux64
        case .pvh: bootProtocol = .pvh
        }
        do {
            return try X86Boot.prepare(kernel: kernel, initrd: initrd, commandLine: commandLine, cpuCount: cpus,
                                       bootProtocol: bootProtocol, into: memory)
        } catch {
            switch error {
            case .setup(.unreadableInitrd):
                throw .boot("initrd \(initrdPath ?? ""): \(error)")
            case .kernel, .protocolUnavailable:
                throw .boot("kernel \(kernelPath): \(error)")
            case let .setup(setup):
                let text = "\(setup)"
                if let initrdPath, text.lowercased().contains("initrd") {
                    throw .boot("initrd \(initrdPath): \(text)")
                }
                throw .boot("boot setup: \(text)")
            }
        }
    }
}
