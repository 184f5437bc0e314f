/// A disk of 0 bytes: an empty hot-attach slot (and what a detached slot goes back to). Every
/// request fails the device's range check first; these bodies are never reached with data.
public final class EmptyBlockBackend: BlockBackend, Sendable {
    public let size: UInt64 = 0
    public let isReadOnly: Bool

    public init(readOnly: Bool = false) { isReadOnly = readOnly }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        throw BlockBackendError(refusal: "the slot is empty")
    }
    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        throw BlockBackendError(refusal: "the slot is empty")
    }
    public func flush() throws(BlockBackendError) {}
    public func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError) {
        throw BlockBackendError(refusal: "the slot is empty")
    }
    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError) {
        throw BlockBackendError(refusal: "the slot is empty")
    }
}
