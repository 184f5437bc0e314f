/// Where a kernel landed in guest memory and how to enter it.
public struct LoadedKernel: Equatable, Sendable {
    /// Which kind of image was loaded.
    public enum Format: Equatable, Sendable { case elf64, elf32, bzImage }

    public var format: Format
    /// Entry for the 64-bit Linux boot protocol (long mode, RSI = zero page): ELF64 e_entry or bzImage load + 0x200.
    public var entry64: UInt64?
    /// Entry for PVH boot (32-bit protected mode, EBX = hvm_start_info), when the image has one.
    public var pvhEntry: UInt32?
    /// True for a Linux kernel (every bzImage; an ELF with a "Linux" note).
    public var isLinux: Bool
    /// Guest-physical memory the kernel owns, loaded bytes plus bss (bzImage: up to the end of init_size).
    public var range: Range<UInt64>
    /// The setup header to copy into the zero page (bzImage only).
    public var setupHeader: SetupHeader?
    /// Longest command line the kernel accepts, excluding the NUL.
    public var commandLineLimit: Int
    /// Highest address an initrd byte may occupy, if the kernel says (bzImage initrd_addr_max).
    public var initrdAddressMax: UInt64?
}
