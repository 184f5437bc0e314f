import Testing
@testable import Memory

@Suite struct GuestMemoryTests {
    @Test func readWriteRoundTrip() throws {
        let memory = try GuestMemory(layout: [(0, 0x10000)])
        try memory.write(UInt32(0xdead_beef), at: 0x100)
        #expect(try memory.read(UInt32.self, at: 0x100) == 0xdead_beef)
        #expect(try memory.read(UInt8.self, at: 0x100) == 0xef)
        try memory.write([1, 2, 3], at: 0xfffd)
        #expect(try memory.readBytes(at: 0xfffd, count: 3) == [1, 2, 3])
    }

    @Test func outOfRangeIsAnErrorNotACrash() throws {
        let memory = try GuestMemory(layout: [(0, 0x10000), (0x20000, 0x1000)])
        #expect(throws: GuestMemoryError.outOfRange(address: 0xffff, length: 2)) {
            try memory.write(UInt16(1), at: 0xffff)
        }
        // A range that straddles the gap between two regions is refused.
        #expect(throws: GuestMemoryError.self) { try memory.readBytes(at: 0xfff0, count: 0x20) }
        // Overflowing address arithmetic is refused.
        #expect(throws: GuestMemoryError.self) { try memory.read(UInt64.self, at: UInt64.max - 3) }
        #expect(throws: GuestMemoryError.self) { try memory.buffer(at: 0, length: -1) }
        #expect(try memory.read(UInt8.self, at: 0x20fff) == 0)
    }

    @Test func zeroClearsPartialPagesAndGivesWholePagesBack() throws {
        let memory = try GuestMemory(layout: [(0, 0x10000)])
        try memory.write([UInt8](repeating: 0xaa, count: 0x10000), at: 0)
        let residentBefore = memory.residentBytes()
        try memory.zero(at: 0x1800, count: 0x3000)   // half a page, two whole pages, half a page
        // The two whole pages were given back (read before anything touches them again).
        #expect(memory.residentBytes() == residentBefore - 0x2000)
        #expect(try memory.readBytes(at: 0x1800, count: 0x3000).allSatisfy { $0 == 0 })
        #expect(try memory.read(UInt8.self, at: 0x17ff) == 0xaa)
        #expect(try memory.read(UInt8.self, at: 0x4800) == 0xaa)
        // A range inside one page is cleared in place.
        try memory.zero(at: 0x5010, count: 0x10)
        #expect(try memory.readBytes(at: 0x500f, count: 0x12) == [0xaa] + [UInt8](repeating: 0, count: 0x10) + [0xaa])
    }

    @Test func layoutSplitsAroundTheHole() {
        let small = X86MemoryLayout.regions(ramSize: 512 << 20)
        #expect(small.count == 1 && small[0].size == 512 << 20)
        let big = X86MemoryLayout.regions(ramSize: 4 << 30)
        #expect(big.count == 2)
        #expect(big[0].size == X86MemoryLayout.mmioHoleStart)
        #expect(big[1].base == 1 << 32 && big[1].size == (4 << 30) - X86MemoryLayout.mmioHoleStart)
    }

    @Test func badLayoutsAreRefused() {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(layout: [(0, 0x1001)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(layout: [(0, 0x2000), (0x1000, 0x1000)]) }
    }
}
