import Memory
import Testing
@testable import X86

@Suite struct BootELFTests {
    @Test func parsesAndLoadsAMinimalVmlinux() throws {
        let data = Array((0..<300).map { UInt8(truncatingIfNeeded: $0 * 3 + 1) })
        let built = BootTestELF.build(entry: 0x1000000, segments: [
            BootTestSegment(paddr: 0x1000000, data: data, memsz: 0x2000),
            BootTestSegment(paddr: 0x1200000, data: [9, 9, 9], memsz: 3),
        ])
        let kernel = try ELFKernel(parsing: built.image)
        #expect(kernel.is64Bit)
        #expect(kernel.entry == 0x1000000)
        #expect(kernel.pvhEntry == 0x100040)
        #expect(kernel.isLinux)
        #expect(kernel.segments.count == 2)
        #expect(kernel.lowestAddress == 0x1000000)
        #expect(kernel.endAddress == 0x1200003)

        let memory = try bootTestMemory()
        // Dirty the bss area first so the test proves it is zeroed.
        try memory.write([UInt8](repeating: 0xEE, count: 0x2000), at: 0x1000000)
        let loaded = try kernel.load(built.image, into: memory)
        #expect(loaded.format == .elf64)
        #expect(loaded.entry64 == 0x1000000)
        #expect(loaded.pvhEntry == 0x100040)
        #expect(loaded.isLinux)
        #expect(loaded.range == 0x1000000..<0x1200003)
        #expect(loaded.setupHeader == nil)
        #expect(try memory.readBytes(at: 0x1000000, count: data.count) == data)
        #expect(try memory.readBytes(at: 0x1000000 + UInt64(data.count), count: 0x2000 - data.count).allSatisfy { $0 == 0 })
        #expect(try memory.readBytes(at: 0x1200000, count: 3) == [9, 9, 9])
    }

    @Test func pvhNoteMissingOrFourByteOrFromSections() throws {
        let noNotes = try ELFKernel(parsing: BootTestELF.build(notes: nil).image)
        #expect(noNotes.pvhEntry == nil)
        #expect(!noNotes.isLinux)

        let otherNotes = try ELFKernel(parsing: BootTestELF.build(notes: [.gnuBuildID]).image)
        #expect(otherNotes.pvhEntry == nil && !otherNotes.isLinux)

        let fourByte = try ELFKernel(parsing: BootTestELF.build(notes: [.gnuBuildID, .pvh32(0x1234_5678)]).image)
        #expect(fourByte.pvhEntry == 0x1234_5678)
        #expect(!fourByte.isLinux)

        let sections = try ELFKernel(parsing: BootTestELF.build(notes: [.linux, .pvh(0x200000)], sectionNotes: true).image)
        #expect(sections.pvhEntry == 0x200000)
        #expect(sections.isLinux)

        // A Xen note of another type is not the PVH entry.
        let otherXen = try ELFKernel(parsing: BootTestELF.build(notes: [BootTestNote(name: "Xen", type: 17, desc: [1, 2, 3, 4])]).image)
        #expect(otherXen.pvhEntry == nil)
    }

    @Test func malformedPVHNotesAreRefused() throws {
        let twoBytes = BootTestELF.build(notes: [BootTestNote(name: "Xen", type: 18, desc: [1, 2])]).image
        #expect(throws: ELFError.self) { try ELFKernel(parsing: twoBytes) }
        do { _ = try ELFKernel(parsing: twoBytes) } catch {
            #expect(error.description.contains("2-byte descriptor"))
        }

        let wide = BootTestELF.build(notes: [BootTestNote(name: "Xen", type: 18, desc: BootTestNote.bytes(UInt64(1) << 32))]).image
        #expect(throws: ELFError.self) { try ELFKernel(parsing: wide) }

        // Descriptor size that runs past the note segment.
        var overrun = BootTestELF.build(notes: [.pvh(0x100000)])
        let noteSegment = overrun.phdrOffsets.last!
        let noteOffset = Int(overrun.image.get(UInt64.self, at: noteSegment + 8))
        overrun.image.put(UInt32(0x1000), at: noteOffset + 4)
        #expect(throws: ELFError.self) { try ELFKernel(parsing: overrun.image) }

        // Name size that runs past the note segment.
        var badName = BootTestELF.build(notes: [.pvh(0x100000)])
        badName.image.put(UInt32(0xFFFF_FFFF), at: Int(badName.image.get(UInt64.self, at: badName.phdrOffsets.last! + 8)))
        #expect(throws: ELFError.self) { try ELFKernel(parsing: badName.image) }
    }

    @Test func elf32PVHGuest() throws {
        let built = BootTestELF.build(is64: false, entry: 0x100000, notes: [.pvh32(0x100010)])
        let kernel = try ELFKernel(parsing: built.image)
        #expect(!kernel.is64Bit)
        #expect(kernel.pvhEntry == 0x100010)
        let memory = try bootTestMemory(size: 16 << 20)
        let loaded = try kernel.load(built.image, into: memory)
        #expect(loaded.format == .elf32)
        #expect(loaded.entry64 == nil)
        #expect(loaded.pvhEntry == 0x100010)
        let sections = try ELFKernel(parsing: BootTestELF.build(is64: false, notes: [.pvh32(0x100020)], sectionNotes: true).image)
        #expect(sections.pvhEntry == 0x100020)
    }

    @Test func headerValidation() throws {
        let good = BootTestELF.build().image
        func expectError(_ mutate: (inout [UInt8]) -> Void, _ check: (ELFError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
            var image = good
            mutate(&image)
            do {
                _ = try ELFKernel(parsing: image)
                Issue.record("expected an error", sourceLocation: sourceLocation)
            } catch {
                #expect(check(error), "unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        expectError({ $0[0] = 0x7E }) { if case .notELF = $0 { return true }; return false }
        expectError({ $0[4] = 3 }) { $0 == .unsupportedClass(3) }
        expectError({ $0[5] = 2 }) { $0 == .unsupportedByteOrder(2) }
        expectError({ $0.put(UInt16(3), at: 16) }) { $0 == .notExecutable(type: 3) }
        expectError({ $0.put(UInt16(183), at: 18) }) { $0 == .wrongMachine(machine: 183, is64Bit: true) }
        expectError({ $0.put(UInt16(0), at: 56) }) { if case .badProgramHeaderTable = $0 { return true }; return false }
        expectError({ $0.put(UInt16(0xFFFF), at: 56) }) { if case .badProgramHeaderTable = $0 { return true }; return false }
        expectError({ $0.put(UInt16(55), at: 54) }) { if case .badProgramHeaderTable = $0 { return true }; return false }
        expectError({ $0.put(UInt64.max - 8, at: 32) }) { if case .truncated = $0 { return true }; return false }
        expectError({ $0 = Array($0.prefix(40)) }) { if case .truncated = $0 { return true }; return false }
        // Segment 0: offset past the end, filesz > memsz, address overflow.
        expectError({ $0.put(UInt64(1 << 40), at: 64 + 8) }) { if case .segmentOutsideFile(0, _, _, _) = $0 { return true }; return false }
        expectError({ $0.put(UInt64(0x10), at: 64 + 40) }) { if case .segmentFileSizeExceedsMemorySize = $0 { return true }; return false }
        expectError({ $0.put(UInt64.max - 0x10, at: 64 + 24) }) { if case .segmentAddressOverflow = $0 { return true }; return false }
        // No PT_LOAD at all.
        expectError({ $0.put(UInt32(6), at: 64) }) { $0 == .noLoadableSegments }
    }

    @Test func truncationMessageIsClear() {
        let image = Array(BootTestELF.build().image.prefix(100))
        do {
            _ = try ELFKernel(parsing: image)
            Issue.record("expected truncation")
        } catch {
            #expect(error.description.hasPrefix("ELF kernel is truncated"))
        }
    }

    @Test func overlappingSegmentsAreRefused() {
        let image = BootTestELF.build(segments: [
            BootTestSegment(paddr: 0x100000, data: [1], memsz: 0x2000),
            BootTestSegment(paddr: 0x101000, data: [2], memsz: 0x10),
        ]).image
        #expect(throws: ELFError.segmentsOverlap(first: 0, second: 1)) { try ELFKernel(parsing: image) }
    }

    @Test func placementIsChecked() throws {
        let memory = try bootTestMemory(size: 16 << 20)
        func load(_ paddr: UInt64, _ memsz: UInt64 = 0x100) throws(ELFError) {
            let image = BootTestELF.build(segments: [BootTestSegment(paddr: paddr, data: [1, 2, 3], memsz: memsz)]).image
            _ = try ELFKernel(parsing: image).load(image, into: memory)
        }
        // [0x10000, 0x20000) is the only low memory a kernel may use.
        try load(0x10000, 0x10000)
        #expect(throws: ELFError.self) { try load(0x10000, 0x10001) }
        #expect(throws: ELFError.self) { try load(0x7000) }
        #expect(throws: ELFError.self) { try load(0x9F000) }
        #expect(throws: ELFError.self) { try load(0xFFFF0, 0x20) }
        // Outside RAM.
        #expect(throws: ELFError.self) { try load(16 << 20) }
        #expect(throws: ELFError.self) { try load((16 << 20) - 0x10, 0x20) }
        do { try load(0x7000) } catch {
            #expect(error.description.contains("boot structures"))
        }
        // A refused load writes nothing.
        #expect(try memory.readBytes(at: (16 << 20) - 0x10, count: 0x10).allSatisfy { $0 == 0 })
        // The image passed to load must be the one parsed.
        let image = BootTestELF.build().image
        let kernel = try ELFKernel(parsing: image)
        #expect(throws: ELFError.imageMismatch(parsedSize: image.count, givenSize: image.count - 1)) {
            try kernel.load(Array(image.dropLast()), into: memory)
        }
    }
}
