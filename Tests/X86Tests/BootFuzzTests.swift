#if canImport(Glibc)
import Glibc
#endif
import Memory
import Testing
@testable import X86

/// Seeded mutation fuzzing of the kernel loaders: every input must end in a typed error or a
/// load that wrote only inside the ranges the parser reported (and nothing at all on error).
@Suite struct BootFuzzTests {
    static let ramSize = 4 << 20
    static let sentinel: UInt8 = 0xA5
    /// Iterations per loader; BOOT_FUZZ_ITERATIONS overrides for longer runs.
    static let iterations: Int = getenv("BOOT_FUZZ_ITERATIONS").flatMap { Int(String(cString: $0)) } ?? 10_000
    /// BOOT_FUZZ_SEED overrides the seeds, to explore beyond the committed ones.
    static let seedOffset: UInt64 = getenv("BOOT_FUZZ_SEED").flatMap { UInt64(String(cString: $0)) } ?? 0

    /// Values that tend to sit on boundaries of size and offset checks.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 4, 7, 8, 12, 16, 18, 32, 52, 56, 62, 64, 0x7F, 0x80, 0xFF, 0x100, 0x1F1, 0x200, 0x20C, 0x400,
        0x1000, 0xFFFF, 0x1_0000, 0x2_0000, 0x9_FC00, 0x10_0000, 0x20_0000, 0x3F_F000, 0x40_0000,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, UInt64(Int.max), UInt64.max, UInt64.max - 1,
    ]

    static func mutate(_ seed: [UInt8], hot: Range<Int>, rng: inout BootRandom) -> [UInt8] {
        var image = seed
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !image.isEmpty else { break }
            // Most mutations hit the headers, where the parsing decisions are made.
            let inHot = Bool.random(using: &rng) || Bool.random(using: &rng)
            let range = inHot && hot.upperBound <= image.count ? hot : 0..<image.count
            let at = Int.random(in: range, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0:
                image[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 1:
                image[at] = UInt8.random(in: 0...255, using: &rng)
            case 2, 3:
                let width = [2, 4, 8].randomElement(using: &rng)!
                let aligned = at & ~(width - 1)
                var value = interesting.randomElement(using: &rng)!
                if Bool.random(using: &rng) { value = value &+ UInt64.random(in: 0...16, using: &rng) &- 8 }
                for i in 0..<width where aligned + i < image.count {
                    image[aligned + i] = UInt8(truncatingIfNeeded: value >> (8 * i))
                }
            case 4:
                image = Array(image.prefix(Int.random(in: 0..<image.count, using: &rng)))
            case 5:
                image += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:
                let end = min(image.count, at + Int.random(in: 1...32, using: &rng))
                for i in at..<end { image[i] = 0 }
            }
        }
        return image
    }

    /// Fills guest RAM with the sentinel.
    static func reset(_ memory: GuestMemory) throws {
        let all = try memory.buffer(at: 0, length: ramSize)
        memset(all.baseAddress!, Int32(sentinel), ramSize)
    }

    /// True when every byte of RAM outside `allowed` still holds the sentinel.
    static func untouchedOutside(_ allowed: [Range<UInt64>], _ memory: GuestMemory, _ reference: [UInt8]) throws -> Bool {
        let all = try memory.buffer(at: 0, length: ramSize)
        var cursor = 0
        let sorted = allowed.sorted { $0.lowerBound < $1.lowerBound }
        return reference.withUnsafeBytes { ref in
            func clean(_ from: Int, _ to: Int) -> Bool {
                to <= from || memcmp(all.baseAddress! + from, ref.baseAddress! + from, to - from) == 0
            }
            for range in sorted {
                guard clean(cursor, Int(range.lowerBound)) else { return false }
                cursor = max(cursor, Int(range.upperBound))
            }
            return clean(cursor, ramSize)
        }
    }

    static func fuzz(seeds: [[UInt8]], hot: Range<Int>, iterations: Int, seed: UInt64) throws -> (loaded: Int, refused: Int) {
        var rng = BootRandom(seed: seed)
        let memory = try GuestMemory(layout: [(0, UInt64(ramSize))])
        let reference = [UInt8](repeating: sentinel, count: ramSize)
        try reset(memory)
        var loaded = 0, refused = 0
        for iteration in 0..<iterations {
            let image = mutate(seeds[iteration % seeds.count], hot: hot, rng: &rng)
            let parsed: KernelImage
            do {
                parsed = try KernelImage(parsing: image)
            } catch {
                #expect(!error.description.isEmpty)
                refused += 1
                continue
            }
            let kernel: LoadedKernel
            do {
                kernel = try parsed.load(image, into: memory)
            } catch {
                #expect(!error.description.isEmpty)
                #expect(try untouchedOutside([], memory, reference), "iteration \(iteration) wrote before refusing")
                refused += 1
                continue
            }
            do {
                loaded += 1
                var written: [Range<UInt64>] = []
                switch parsed {
                case let .elf(elf):
                    for segment in elf.segments {
                        written.append(segment.physicalRange)
                        let copied = try memory.readBytes(at: segment.physicalAddress, count: Int(segment.fileSize))
                        #expect(copied[...] == image[Int(segment.fileOffset)..<Int(segment.fileOffset + segment.fileSize)])
                        let bss = try memory.readBytes(at: segment.physicalAddress + segment.fileSize,
                                                       count: Int(segment.memorySize - segment.fileSize))
                        #expect(bss.allSatisfy { $0 == 0 })
                    }
                case let .bzImage(bz):
                    let start = kernel.entry64! - 0x200
                    written.append(start..<(start + UInt64(bz.kernelSize)))
                    #expect(try memory.readBytes(at: start, count: bz.kernelSize)[...] == image[bz.setupSize...])
                }
                for range in written {
                    #expect(range.upperBound <= UInt64(ramSize))
                    for reserved in BootLayout.bootStructureRanges {
                        #expect(!overlaps(range, reserved), "iteration \(iteration) wrote into \(reserved)")
                    }
                }
                #expect(try untouchedOutside(written, memory, reference), "iteration \(iteration) wrote outside its segments")
                try reset(memory)
            }
        }
        return (loaded, refused)
    }

    @Test func elfMutations() throws {
        let seeds = [
            BootTestELF.build().image,
            BootTestELF.build(entry: 0x10000, segments: [
                BootTestSegment(paddr: 0x10000, data: [1, 2, 3, 4], memsz: 0x100),
                BootTestSegment(paddr: 0x200000, data: Array(repeating: 0x5A, count: 64), memsz: 0x80),
            ], notes: [.gnuBuildID, .linux, .pvh32(0x10000)]).image,
            BootTestELF.build(is64: false, notes: [.pvh32(0x100000)]).image,
            BootTestELF.build(notes: [.pvh(0x100000), .linux], sectionNotes: true).image,
        ]
        let result = try Self.fuzz(seeds: seeds, hot: 0..<256, iterations: Self.iterations, seed: 0xE1F &+ Self.seedOffset)
        // The mutator must leave enough images valid for the load path to be exercised.
        #expect(result.loaded > Self.iterations / 20)
        #expect(result.refused > Self.iterations / 20)
    }

    @Test func bzImageMutations() throws {
        let seeds = [
            BootTestBzImage.build(setupSects: 1, kernelAlignment: 0x20_0000, prefAddress: 0x20_0000, initSize: 0x10_0000,
                                  kernel: Array((0..<3000).map { UInt8(truncatingIfNeeded: $0) })),
            BootTestBzImage.build(setupSects: 0, relocatable: false, prefAddress: 0x20_0000, initSize: 0x8_0000),
            BootTestBzImage.build(setupSects: 2, prefAddress: 0, initSize: 0x1000, kernel: [0x90, 0x90]),
        ]
        let result = try Self.fuzz(seeds: seeds, hot: 0x1F0..<0x270, iterations: Self.iterations, seed: 0xB2 &+ Self.seedOffset)
        #expect(result.loaded > Self.iterations / 20)
        #expect(result.refused > Self.iterations / 20)
    }

    @Test func randomBytesAreNotKernels() throws {
        var rng = BootRandom(seed: 7)
        for _ in 0..<1000 {
            var image = (0..<Int.random(in: 0..<1200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Sometimes plant a magic so the format-specific parsers see garbage too.
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where image.count >= 4: image.replaceSubrange(0..<4, with: ELFKernel.magic)
            case 1 where image.count >= 0x206: image.put(UInt32(0x5372_6448), at: 0x202)
            default: break
            }
            do {
                _ = try KernelImage(parsing: image)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }
}
