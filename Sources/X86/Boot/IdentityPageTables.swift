import Memory

/// Four-level page tables identity-mapping the first 4 GiB with 2 MiB pages (PML4 at 0x9000).
///
/// Supervisor-only (U/S = 0), present and writable: just enough for the 64-bit Linux entry, which
/// needs the kernel, zero page and command line mapped and builds its own tables right away.
public enum IdentityPageTables {
    public static let present: UInt64 = 1 << 0
    public static let writable: UInt64 = 1 << 1
    public static let user: UInt64 = 1 << 2
    public static let pageSize: UInt64 = 1 << 7
    /// One page directory per GiB.
    public static let directoryCount = 4
    public static let largePage: UInt64 = 2 << 20

    /// PML4, PDPT and the page directories, contiguous from `BootLayout.pml4`.
    public static var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(BootLayout.pageTablesEnd - BootLayout.pml4))
        let pdptOffset = Int(BootLayout.pdpt - BootLayout.pml4)
        let pdOffset = Int(BootLayout.pageDirectories - BootLayout.pml4)
        out.bootStore(BootLayout.pdpt | present | writable, at: 0)
        for directory in 0..<directoryCount {
            let directoryAddress = BootLayout.pageDirectories + UInt64(directory) * 0x1000
            out.bootStore(directoryAddress | present | writable, at: pdptOffset + directory * 8)
            for entry in 0..<512 {
                let frame = UInt64(directory * 512 + entry) * largePage
                out.bootStore(frame | present | writable | pageSize, at: pdOffset + directory * 0x1000 + entry * 8)
            }
        }
        return out
    }

    /// Writes the tables at `BootLayout.pml4`.
    public static func write(into memory: GuestMemory) throws(BootSetupError) {
        do { try memory.write(bytes, at: BootLayout.pml4) } catch { throw .memory(error) }
    }
}
