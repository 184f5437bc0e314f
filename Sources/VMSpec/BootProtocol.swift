extension VMSpec {
    /// How the kernel image is entered.
    public enum BootProtocol: String, Codable, Sendable, CaseIterable {
        /// bzImage → 64-bit Linux boot protocol; ELF with a Linux note → 64-bit entry with boot_params;
        /// other ELF with a PVH note → PVH; other ELF → 64-bit entry.
        case auto
        /// The Linux 64-bit boot protocol (boot_params in RSI).
        case linux
        /// The Xen PVH entry (32-bit, hvm_start_info in EBX).
        case pvh
    }
}
