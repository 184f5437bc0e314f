import Testing
import KVM
import Memory
import X86

/// Deterministic randomized checks: nothing crashes, and what is emulated moves RIP by exactly its length.
@Suite struct FallbackFuzzTests {
    static let prefixes: [UInt8] = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65,
                                    0x40, 0x41, 0x44, 0x48, 0x49, 0x4c, 0x4d, 0x4f]
    static let templates: [[UInt8]] = [
        [0xf3, 0x0f, 0xb8], [0xf3, 0x0f, 0xbc], [0xf3, 0x0f, 0xbd], [0x0f, 0xbc], [0x0f, 0xbd],
        [0x0f, 0x01, 0xca], [0x0f, 0x01, 0xcb], [0x0f, 0x01], [0xcc], [0x9b], [0x0f, 0x0b], [0x90], [0x0f, 0x1f],
        [0x0f, 0xae], [0x0f, 0xc7], [0x0f, 0x38], [0x0f, 0x3a], [0xc4], [0xc5], [0x62], [0x8f], [0x0f],
    ]

    /// Random instruction-like bytes: pure noise, or prefixes + a template + random ModRM/SIB/displacement.
    static func randomBytes(_ rng: inout FallbackSplitMix64) -> [UInt8] {
        var bytes: [UInt8] = []
        if rng.next() % 4 == 0 {
            for _ in 0..<Int.random(in: 0...16, using: &rng) { bytes.append(UInt8.random(in: 0...255, using: &rng)) }
            return bytes
        }
        for _ in 0..<Int.random(in: 0...4, using: &rng) { bytes.append(prefixes.randomElement(using: &rng)!) }
        var template = templates.randomElement(using: &rng)!
        // Move a mandatory F3 among the other prefixes now and then.
        if template.first == 0xf3 && rng.next() % 2 == 0 {
            template.removeFirst()
            bytes.insert(0xf3, at: Int.random(in: 0...bytes.count, using: &rng))
        }
        bytes += template
        for _ in 0..<Int.random(in: 0...8, using: &rng) { bytes.append(UInt8.random(in: 0...255, using: &rng)) }
        if rng.next() % 8 == 0 { bytes.removeLast(Int.random(in: 0...bytes.count, using: &rng)) }   // truncate
        return bytes
    }

    static func randomState(_ rng: inout FallbackSplitMix64) -> (Registers, SpecialRegisters) {
        var special: SpecialRegisters
        switch rng.next() % 4 {
        case 0, 1: special = FallbackTestGuest.longMode(cpl: rng.next() % 4 == 0 ? 3 : 0)
        case 2: special = FallbackTestGuest.protected32()
        default: special = FallbackTestGuest.protected16()
        }
        if rng.next() % 4 == 0 { special.cr4 |= 1 << 21 }          // SMAP
        if rng.next() % 8 == 0 { special.cr0 |= 0b1010 }           // MP|TS
        special.fs.base = rng.next() % 2 == 0 ? rng.next() % 0x40_0000 : rng.next()
        special.gs.base = rng.next() % 0x80_0000
        var registers = Registers()
        for index in 0..<16 {
            switch rng.next() % 4 {
            case 0: registers[gpr: index] = rng.next()
            case 1: registers[gpr: index] = 0
            default: registers[gpr: index] = rng.next() % 0x90_0000   // mostly mapped, some faults
            }
        }
        switch InstructionDecoder.Mode(special) {
        case .bits64: registers.rip = rng.next() % 2 == 0 ? 0xffff_ffff_8100_0000 &+ rng.next() % 0x1000 : rng.next()
        case .bits32: registers.rip = rng.next() & 0xffff_ffff
        case .bits16: registers.rip = rng.next() & 0xffff
        }
        registers.rflags = 0x2 | (rng.next() & 0x4_0ed5)   // CF PF AF ZF SF OF AC and friends
        return (registers, special)
    }

    static func ripMask(_ mode: InstructionDecoder.Mode) -> UInt64 {
        switch mode {
        case .bits64: return .max
        case .bits32: return 0xffff_ffff
        case .bits16: return 0xffff
        }
    }

    @Test func randomInstructionsNeverCrashAndAdvanceByTheirLength() throws {
        let memory = try FallbackTestGuest.memory()
        var rng = FallbackSplitMix64(seed: 0x5eed_f00d_cafe)
        var emulated = 0, injected = 0, unsupported = 0, pageFaults = 0
        for _ in 0..<20_000 {
            let bytes = Self.randomBytes(&rng)
            let (before, special) = Self.randomState(&rng)
            let mode = InstructionDecoder.Mode(special)
            var registers = before
            let outcome = FallbackTestGuest.emulate(bytes, &registers, special, memory)
            let decoded = FallbackTestGuest.decodeResult(bytes, mode)
            switch outcome {
            case .emulated:
                emulated += 1
                guard case .success(let instruction) = decoded else {
                    Issue.record("emulated undecodable \(bytes)")
                    continue
                }
                #expect(instruction.length <= 15 && instruction.length <= bytes.count)
                #expect(registers.rip == (before.rip &+ UInt64(instruction.length)) & Self.ripMask(mode),
                        "\(bytes)")
            case .inject(let exception, let faultAddress):
                injected += 1
                if exception.vector == 3 {
                    let length = (try? decoded.get())?.length ?? -1
                    #expect(registers.rip == (before.rip &+ UInt64(length)) & Self.ripMask(mode))
                } else {
                    #expect(registers == before, "a fault must leave the registers alone: \(bytes)")
                }
                #expect((exception.vector == 14) == (faultAddress != nil))
                if exception.vector == 14 { pageFaults += 1 }
            case .unsupported(let failure):
                unsupported += 1
                #expect(registers == before)
                #expect(failure.description.hasPrefix("cannot "))
            }
        }
        // The generator reaches every kind of outcome.
        #expect(emulated > 1000 && injected > 1000 && unsupported > 1000 && pageFaults > 100,
                "emulated \(emulated) injected \(injected) unsupported \(unsupported) #PF \(pageFaults)")
    }

    @Test func decoderLengthIsExactlyTheBytesItNeeds() {
        var rng = FallbackSplitMix64(seed: 42)
        let modes: [InstructionDecoder.Mode] = [.bits64, .bits32, .bits16]
        for _ in 0..<20_000 {
            let bytes = Self.randomBytes(&rng)
            let mode = modes.randomElement(using: &rng)!
            guard case .success(let instruction) = FallbackTestGuest.decodeResult(bytes, mode) else { continue }
            #expect(instruction.length >= 1 && instruction.length <= min(15, bytes.count))
            // The instruction alone decodes the same; one byte less is truncated.
            let exact = Array(bytes[0..<instruction.length])
            #expect(FallbackTestGuest.decodeResult(exact, mode) == .success(instruction))
            #expect(FallbackTestGuest.decodeResult(Array(exact.dropLast()), mode)
                == .failure(.truncated(available: instruction.length - 1)), "\(exact)")
        }
    }

    @Test func pageWalkerNeverTouchesMemoryOutsideRAM() throws {
        // Random page-table contents and CR3: every outcome is a value, never a trap.
        let memory = try GuestMemory(layout: [(0, 0x10_0000)])
        var rng = FallbackSplitMix64(seed: 7)
        let table = try memory.buffer(at: 0, length: 0x10_0000)
        for offset in stride(from: 0, to: table.count, by: 8) {
            var entry = rng.next()
            if rng.next() % 2 == 0 { entry = (entry & 0x8000_0000_000f_ffff) | 0x7 }  // mostly in-RAM pointers
            table.storeBytes(of: entry, toByteOffset: offset, as: UInt64.self)
        }
        var results = (ok: 0, fault: 0, outside: 0, nonCanonical: 0)
        for _ in 0..<20_000 {
            var special = SpecialRegisters()
            special.cr0 = 0x8001_0001
            special.cr3 = rng.next() % 4 == 0 ? rng.next() : rng.next() % 0x10_0000
            special.cr4 = [0x20, 0x1020, 0x10, 0x0, 0x30_0020][Int(rng.next() % 5)]
            special.efer = [0xd00, 0x800, 0x0][Int(rng.next() % 3)]
            special.cs.dpl = UInt8(rng.next() % 4)
            let kinds: [PageWalker.AccessKind] = [.read, .write, .fetch]
            let access = PageWalker.Access(kinds[Int(rng.next() % 3)], alignmentCheck: rng.next() % 2 == 0)
            switch PageWalker.translate(rng.next(), access: access, special: special, memory: memory) {
            case .success: results.ok += 1
            case .failure(.pageFault): results.fault += 1
            case .failure(.tableOutsideRAM): results.outside += 1
            case .failure(.nonCanonical): results.nonCanonical += 1
            }
        }
        #expect(results.ok > 0 && results.fault > 0 && results.outside > 0 && results.nonCanonical > 0,
                "\(results)")
    }
}
