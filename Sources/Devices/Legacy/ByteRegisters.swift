/// Shared plumbing for the legacy ISA devices, whose registers are all 8 bits wide.
///
/// The ISA bus splits a wide access to an 8-bit device into byte accesses at consecutive
/// ports, so a 2- or 4-byte access is treated as that many byte accesses. Bytes that land
/// outside the device read as all-ones (a floating bus) and their writes are dropped.
@inline(__always)
func byteRegister(_ offset: UInt64, _ index: Int, count: UInt64) -> Int? {
    // Checked this way round so that a huge offset cannot wrap back into range.
    guard offset < count, UInt64(index) < count - offset else { return nil }
    return Int(offset) + index
}
