import Memory

/// The kernel command line, written NUL-terminated at `BootLayout.commandLine`.
public struct BootCommandLine: Equatable, Sendable {
    public let address: UInt64
    /// Length in bytes, excluding the NUL.
    public let length: Int

    public init(address: UInt64, length: Int) { self.address = address; self.length = length }

    /// Writes `text` for a kernel accepting `limit` bytes (LoadedKernel.commandLineLimit); never more than 64 KiB with the NUL.
    @discardableResult
    public static func write(_ text: String, limit: Int = BootLayout.commandLineMaxSize - 1,
                             into memory: GuestMemory) throws(BootSetupError) -> BootCommandLine {
        var bytes = Array(text.utf8)
        let effectiveLimit = min(limit, BootLayout.commandLineMaxSize - 1)
        guard bytes.count <= effectiveLimit else {
            throw .commandLineTooLong(length: bytes.count, limit: effectiveLimit)
        }
        // An embedded NUL would silently cut the command line short in the guest.
        if let nul = bytes.firstIndex(of: 0) { throw .commandLineContainsNUL(offset: nul) }
        bytes.append(0)
        do { try memory.write(bytes, at: BootLayout.commandLine) } catch { throw .memory(error) }
        return BootCommandLine(address: BootLayout.commandLine, length: bytes.count - 1)
    }
}
