import Memory
import Testing
@testable import X86

/// A file read on demand: counts what is read, and fails reads that touch `failFrom` or beyond.
private final class CountingSource: KernelSource {
    let image: [UInt8]
    let failFrom: Int
    private(set) var bytesRead = 0
    private(set) var largestRead = 0

    init(_ image: [UInt8], failFrom: Int = .max) {
        self.image = image
        self.failFrom = failFrom
    }

    var size: Int { image.count }

    func read(at offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Int32 {
        guard offset + destination.count <= failFrom else { return 5 }  // EIO
        bytesRead += destination.count
        largestRead = max(largestRead, destination.count)
        image.withUnsafeBytes { destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + destination.count)])) }
        return 0
    }
}

private func bootError(_ body: () throws(X86BootError) -> Void) -> X86BootError? {
    do { try body(); return nil } catch { return error }
}

private func isUnreadableKernel(_ error: X86BootError?) -> Bool {
    if case .kernel(.elf(.unreadable))? = error { return true }
    return false
}

private func isUnreadableInitrd(_ error: X86BootError?) -> Bool {
    if case .setup(.unreadableInitrd)? = error { return true }
    return false
}

/// Booting from a `KernelSource`: an ELF kernel is parsed from its header and note pages and its
/// segments (and the initrd) go straight into guest RAM, so the VMM never holds the file whole.
@Suite struct BootKernelSourceTests {
    /// A kernel with a 1 MiB text segment and a small data segment, notes at the end.
    private func bigKernel() -> BootTestELF.Built {
        let text = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        return BootTestELF.build(entry: 0x1000000, segments: [
            BootTestSegment(paddr: 0x1000000, data: text, memsz: UInt64(text.count)),
            BootTestSegment(paddr: 0x1200000, data: [1, 2, 3, 4], memsz: 0x3000),
        ])
    }

    @Test func anELFKernelIsParsedFromAFewPagesAndLoadedSegmentBySegment() throws {
        let built = bigKernel()
        let source = CountingSource(built.image)
        let parsed = try ELFKernel(parsing: source)
        #expect(parsed == (try ELFKernel(parsing: built.image)))
        // The header page and the notes' page: not the megabyte in between.
        #expect(source.bytesRead <= 2 * PagedImage.pageSize, "parsing read \(source.bytesRead) bytes")

        let memory = try bootTestMemory()
        try memory.write([UInt8](repeating: 0xEE, count: 0x3000), at: 0x1200000)
        let before = source.bytesRead
        let loaded = try parsed.load(from: source, into: memory)
        #expect(loaded == (try ELFKernel(parsing: built.image).load(built.image, into: try bootTestMemory())))
        // Exactly the segments' file bytes, each in one read straight into guest RAM.
        #expect(source.bytesRead - before == (1 << 20) + 4)
        #expect(source.largestRead == 1 << 20)
        #expect(try memory.readBytes(at: 0x1000000, count: 1 << 20) == Array(built.image[Int(parsed.segments[0].fileOffset)...].prefix(1 << 20)))
        #expect(try memory.readBytes(at: 0x1200000, count: 0x3000) == [1, 2, 3, 4] + [UInt8](repeating: 0, count: 0x3000 - 4))
    }

    @Test func notesFromSectionsAndTheWholeBootWorkFromASource() throws {
        let sections = BootTestELF.build(notes: [.linux, .pvh(0x200000)], sectionNotes: true)
        #expect(try ELFKernel(parsing: CountingSource(sections.image)) == (try ELFKernel(parsing: sections.image)))

        let built = bigKernel()
        let initrd = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let fromSources = try X86Boot.prepare(kernel: CountingSource(built.image), initrd: CountingSource(initrd),
                                              commandLine: "console=ttyS0", cpuCount: 2, into: try bootTestMemory())
        let memory = try bootTestMemory()
        let fromArrays = try X86Boot.prepare(kernel: built.image, initrd: initrd, commandLine: "console=ttyS0", cpuCount: 2, into: memory)
        #expect(fromSources == fromArrays)
        let placed = try #require(fromArrays.initrd)
        #expect(try memory.readBytes(at: placed.address, count: initrd.count) == initrd)
    }

    @Test func aFailedReadIsReportedAsOneNotGuessedAround() throws {
        let built = bigKernel()
        // The notes sit after the segments: their page cannot be read.
        let notesUnreadable = CountingSource(built.image, failFrom: built.image.count - 16)
        var notesFailure: ELFError?
        do { _ = try ELFKernel(parsing: notesUnreadable) } catch { notesFailure = error }
        if case .unreadable? = notesFailure {} else { Issue.record("expected .unreadable, got \(String(describing: notesFailure))") }
        #expect(notesFailure?.description.contains("cannot read") == true)
        // Notes that span more pages than the parser keeps: refused by that bound, named as such.
        let manyNotes = Array(repeating: BootTestNote(name: "GNU", type: 3, desc: [1, 2, 3, 4]), count: (1 << 20) / 20 + 400)
        let hugeNotes = BootTestELF.build(notes: manyNotes + [.linux])
        var boundFailure: ELFError?
        do { _ = try ELFKernel(parsing: CountingSource(hugeNotes.image)) } catch { boundFailure = error }
        #expect(boundFailure?.description.contains("headers and notes span more than 1024 KiB") == true, "\(String(describing: boundFailure))")
        #expect(try ELFKernel(parsing: hugeNotes.image).isLinux, "the same image from memory has no such bound")
        // Parsing works, the text segment's read fails: an error, and the boot stops there.
        let textUnreadable = CountingSource(built.image, failFrom: Int(try ELFKernel(parsing: built.image).segments[0].fileOffset) + 100)
        let memory = try bootTestMemory()
        let segmentFailure = bootError { () throws(X86BootError) in
            _ = try X86Boot.prepare(kernel: textUnreadable, initrd: nil, commandLine: "", cpuCount: 1, into: memory)
        }
        #expect(isUnreadableKernel(segmentFailure), "\(String(describing: segmentFailure))")
        let initrdFailure = bootError { () throws(X86BootError) in
            _ = try X86Boot.prepare(kernel: CountingSource(built.image), initrd: CountingSource([1, 2, 3], failFrom: 2),
                                    commandLine: "", cpuCount: 1, into: memory)
        }
        #expect(isUnreadableInitrd(initrdFailure), "\(String(describing: initrdFailure))")
    }
}
