import Memory
import Testing
@testable import Devices

/// Thousands of seeded random chains, hostile and benign, against rng and blk. A reference walk
/// (written independently of VirtQueue) says which chains are violations; the device must agree,
/// never crash or hang, and never touch guest memory outside the rings and the data window.
@Suite struct VirtioFuzzTests {
    static let ramEnd: UInt64 = 0x100000
    static let queueSize: UInt16 = 16

    /// A random buffer address: mostly inside the data window, sometimes not RAM at all.
    static func address(_ random: inout SplitMix64) -> UInt64 {
        let data = VirtioTestDriver.dataBase
        switch random.next() % 10 {
        case 0: return ramEnd + random.next() % 0x10000                    // past RAM
        case 1: return UInt64.max - random.next() % 64                      // wraps
        case 2: return ramEnd - 1 - random.next() % 16                      // straddles the end if long
        case 3: return random.next()                                        // anything
        default: return data + random.next() % (VirtioTestDriver.dataSize / 2)
        }
    }

    static func length(_ random: inout SplitMix64) -> UInt32 {
        switch random.next() % 8 {
        case 0: return 0
        case 1: return UInt32.max - UInt32(random.next() % 16)
        case 2: return UInt32(0x10_0001 + random.next() % 0x10_0000)     // larger than RAM
        case 3: return 1
        case 4: return 16
        default: return UInt32(1 + random.next() % 0x1000)
        }
    }

    /// Independent reference: is the chain at `head` valid, and what are its readable/writable totals?
    /// Buffers that are valid are guaranteed by the generator to sit in the data window.
    static func reference(memory: GuestMemory, table: UInt64, head: UInt16, size: Int,
                          indirectAllowed: Bool) -> (valid: Bool, readable: UInt64, writable: UInt64) {
        var readable: UInt64 = 0, writable: UInt64 = 0, sawWritable = false
        var base = table, entries = size, index = Int(head), steps = 0, nested = false
        while true {
            steps += 1
            if steps > entries { return (false, 0, 0) }
            let at = base + 16 * UInt64(index)
            let address: UInt64 = try! memory.read(at: at)
            let length: UInt32 = try! memory.read(at: at + 8)
            let flags: UInt16 = try! memory.read(at: at + 12)
            let next: UInt16 = try! memory.read(at: at + 14)
            if flags & 4 != 0 {
                if !indirectAllowed || nested || flags & 1 != 0 { return (false, 0, 0) }
                if length == 0 || length % 16 != 0 || length / 16 > 1024 { return (false, 0, 0) }
                if !(address < ramEnd && UInt64(length) <= ramEnd - address) { return (false, 0, 0) }
                base = address; entries = Int(length / 16); index = 0; steps = 0; nested = true
                continue
            }
            if length > 0 && !(address < ramEnd && UInt64(length) <= ramEnd - address) { return (false, 0, 0) }
            if flags & 2 != 0 { sawWritable = true; writable += UInt64(length) } else {
                if sawWritable { return (false, 0, 0) }
                readable += UInt64(length)
            }
            if flags & 1 == 0 { return (true, readable, writable) }
            if Int(next) >= entries { return (false, 0, 0) }
            index = Int(next)
        }
    }

    /// Writes a random chain (direct or through an indirect table) and returns its head. Half the
    /// chains are benign (what a real driver builds), half hostile.
    static func generate(_ driver: VirtioTestDriver, _ random: inout SplitMix64, block: Bool) -> UInt16 {
        let size = Int(queueSize)
        let hostile = random.next() % 2 == 0
        let head = UInt16(random.next() % UInt64(size))
        let useIndirect = random.next() % 4 == 0
        let count = 1 + Int(random.next() % 5)
        let table = useIndirect ? VirtioTestDriver.dataBase + 0x30000 + (random.next() % 16) * 0x400 : driver.queues[0].desc
        let entries = useIndirect ? count : size
        var positions: [UInt16] = [useIndirect ? 0 : head]
        for step in 1..<max(count, 1) {
            // Benign chains use distinct slots; hostile ones may reuse them (loops).
            positions.append(hostile ? UInt16(random.next() % UInt64(entries)) : UInt16((Int(positions[0]) + step) % entries))
        }
        let sloppy = hostile && random.next() % 3 == 0
        let firstWritable = block && !hostile ? max(1, count - 1 - Int(random.next() % 2)) : 1 + Int(random.next() % UInt64(count))
        for (step, position) in positions.enumerated() {
            let last = step == count - 1
            var flags: UInt16 = last ? 0 : 1
            if sloppy ? random.next() % 2 == 0 : step >= firstWritable { flags |= 2 }
            var next = last ? UInt16(random.next() % 4) : positions[step + 1]
            var address = VirtioTestDriver.dataBase + random.next() % (VirtioTestDriver.dataSize / 2)
            var length = UInt32(1 + random.next() % 0x1000)
            if hostile {
                if random.next() % 20 == 0 { flags |= 4 }                                   // stray indirect
                if random.next() % 10 == 0 { next = UInt16(truncatingIfNeeded: random.next()) } // loops, out of range
                address = Self.address(&random)
                length = Self.length(&random)
                if address < ramEnd && address >= ramEnd - 16 {
                    // Near the end of RAM means across it: the top of RAM is guard memory.
                    length = max(length, UInt32(ramEnd - address) + 1)
                }
            } else if block && random.next() % 2 == 0 {
                length = UInt32(512 * (1 + random.next() % 4))
            }
            if block && step == 0 && random.next() % 4 != 0 {
                // A plausible header so blk gets past decoding and really does I/O.
                address = VirtioTestDriver.dataBase + 0x3F000
                length = 16
                flags &= ~2
                let types: [UInt32] = [0, 1, 4, 8, 11, 13, 7]
                try! driver.memory.write(types[Int(random.next() % 7)], at: address)
                try! driver.memory.write(random.next() % 3 == 0 ? random.next() : random.next() % 80, at: address + 8)
            }
            driver.writeDescriptor(0, position, RawDescriptor(address: address, length: length, flags: flags, next: next),
                                   table: table)
        }
        if useIndirect {
            var flags: UInt16 = 4
            var length = UInt32(16 * count)
            var tableAddress = table
            if hostile {
                if random.next() % 6 == 0 { flags |= 1 }
                if random.next() % 6 == 0 { length = UInt32(random.next() % 0x10000) }
                if random.next() % 6 == 0 { tableAddress = Self.address(&random) }
            }
            driver.writeDescriptor(0, head, RawDescriptor(address: tableAddress, length: length, flags: flags, next: 0))
        }
        return head
    }

    @Test(arguments: [UInt64(1), 42, 0xC0FFEE, 0xBAD_5EED])
    func randomChainsMatchTheReference(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let block = seed % 2 == 0
        let device: any VirtioDevice = block ? VirtioBlock(backend: MemoryBlockBackend(size: 64 * 512)) : VirtioRNG()
        let driver = try VirtioTestDriver(device: device)
        var violations = 0, served = 0
        var features: UInt64 = 0
        func setUp() {
            features = VirtioFeature.version1
            if random.next() % 2 == 0 { features |= VirtioFeature.eventIndex }
            if random.next() % 4 != 0 { features |= VirtioFeature.indirectDescriptors }
            #expect(driver.initialize(features: features, queueSize: VirtioFuzzTests.queueSize))
        }
        setUp()
        for iteration in 0..<3000 {
            if random.next() % 50 == 0 {
                // An avail idx that runs ahead by more than the ring size.
                let q = driver.queues[0]
                driver.setAvailIndex(0, q.availIndex &+ VirtioFuzzTests.queueSize &+ 1 &+ UInt16(random.next() % 1000))
                driver.kick(0)
                #expect(driver.needsReset, "iteration \(iteration): avail jump")
                violations += 1
                setUp()
                continue
            }
            let head = VirtioFuzzTests.generate(driver, &random, block: block)
            let verdict = VirtioFuzzTests.reference(
                memory: driver.memory, table: driver.queues[0].desc, head: head, size: Int(VirtioFuzzTests.queueSize),
                indirectAllowed: features & VirtioFeature.indirectDescriptors != 0)
            let deviceRefuses = block && verdict.valid && (verdict.readable < 16 || verdict.writable < 1)
            if random.next() % 3 == 0 { driver.setUsedEvent(0, UInt16(truncatingIfNeeded: random.next())) }
            driver.publish(0, head: head)
            driver.kick(0)
            let used = driver.takeUsed(0)
            if verdict.valid && !deviceRefuses {
                #expect(!driver.needsReset, "iteration \(iteration): valid chain refused: \(driver.logs.all.last ?? "")")
                #expect(used.count == 1 && used.first?.id == UInt32(head), "iteration \(iteration)")
                if let length = used.first?.length { #expect(UInt64(length) <= verdict.writable) }
                served += 1
            } else {
                #expect(driver.needsReset, "iteration \(iteration): violation accepted")
                #expect(used.isEmpty, "iteration \(iteration)")
                violations += 1
            }
            if driver.needsReset { setUp() }
            if iteration % 250 == 0 { #expect(driver.guardIntact(), "iteration \(iteration)") }
        }
        #expect(driver.guardIntact())
        #expect(driver.transport.violationCount == violations)
        #expect(driver.logs.all.count == (1...violations).filter(VirtioMMIOTransport.logsViolation).count,
                "log lines rate-limited: the first few, then powers of two")
        #expect(served > 600 && violations > 600, "the generator exercises both sides (\(served) served, \(violations) refused)")
    }

    @Test(arguments: [UInt64(7), 99])
    func randomRegisterTrafficNeverCrashes(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        for device in [VirtioRNG() as any VirtioDevice, VirtioBlock(backend: MemoryBlockBackend(size: 4096))] {
            let driver = try VirtioTestDriver(device: device)
            let interesting: [UInt64] = [0x14, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64, 0x70, 0x80, 0x84, 0x90, 0x94,
                                         0xA0, 0xA4, 0xFC, 0x100, 0x108]
            for _ in 0..<20_000 {
                let offset = random.next() % 4 == 0 ? random.next() % 0x1000 : interesting.randomElement(using: &random)!
                let size = [1, 2, 4, 8].randomElement(using: &random)!
                var value = random.next()
                // Keep addresses inside RAM half the time so activation sometimes succeeds.
                if offset >= 0x80 && offset < 0xB0 && offset % 8 == 0 && random.next() % 2 == 0 { value = random.next() % 0xF0000 & ~0xF }
                if offset == 0x70 && random.next() % 2 == 0 { value = [0, 1, 3, 0xB, 0xF].randomElement(using: &random)! }
                if random.next() % 2 == 0 {
                    driver.transport.write(offset, size: size, value: value)
                } else {
                    _ = driver.transport.read(offset, size: size)
                }
                if random.next() % 8 == 0 { driver.transport.processNotifications() }
            }
        }
    }
}
