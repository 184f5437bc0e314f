import Glibc
import Testing
@testable import Devices

/// Hot attach to an empty virtio-blk slot (a pod's container disks): the backing comes as
/// descriptors (a jailed VMM opens no paths), the capacity changes at once in config space, and
/// requests switch to the new backing before the next one is served.
@Suite struct VirtioBlockHotAttachTests {
    let blockTests = VirtioBlockTests()

    func emptySlot() throws -> (VirtioTestDriver, VirtioBlock) {
        let block = VirtioBlock(backend: EmptyBlockBackend(), serial: "vireo-slot-0")
        let driver = try VirtioTestDriver(device: block)
        #expect(driver.initialize())
        return (driver, block)
    }

    /// An empty file opened read-write (an overlay or map the host just created).
    func emptyDescriptor() -> (Int32, TemporaryFile) {
        let file = TemporaryFile(size: 0)
        return (open(file.path, O_RDWR | O_CLOEXEC), file)
    }

    @Test func anOverlayFromDescriptorsReplacesTheEmptySlotAndDetachEmptiesIt() throws {
        let (driver, block) = try emptySlot()
        #expect(block.advertisedCapacity == 0 && driver.transport.read(0x100, size: 8) == 0)
        let (refused, _) = try blockTests.submit(driver, type: 0, sector: 0, into: [.writable(blockTests.payload, 512)])
        #expect(refused == 1, "a read of the empty slot fails")

        let base = TemporaryFile(size: 2 * 4096) { UInt8(truncatingIfNeeded: $0 / 512) }
        let (overlayFD, overlayFile) = emptyDescriptor()
        let (mapFD, mapFile) = emptyDescriptor()
        let backend = try OverlayBlockBackend(overlayFD: overlayFD, mapFD: mapFD, baseFD: open(base.path, O_RDONLY | O_CLOEXEC), name: "test")
        try block.attach(backend)
        #expect(driver.transport.read(0x100, size: 8) == 16, "the guest reads the new capacity at once")
        let (read, _) = try blockTests.submit(driver, type: 0, sector: 3, into: [.writable(blockTests.payload, 512)])
        #expect(read == 0 && block.capacity == 16)
        #expect(try driver.memory.readBytes(at: blockTests.payload, count: 512).allSatisfy { $0 == 3 }, "the base's bytes")
        try driver.memory.write([UInt8](repeating: 0x77, count: 512), at: blockTests.payload)
        let (written, _) = try blockTests.submit(driver, type: 1, sector: 5, out: [.readable(blockTests.payload, 512)])
        #expect(written == 0)
        #expect(base.read(at: 5 * 512, count: 1) == [5], "the base is never written")
        #expect(overlayFile.read(at: 5 * 512, count: 512).allSatisfy { $0 == 0x77 }, "the write is in the overlay")
        #expect(mapFile.read(at: 0, count: 8) == Array("VIREOMAP".utf8), "the map was initialized")

        try block.attach(EmptyBlockBackend())
        #expect(driver.transport.read(0x100, size: 8) == 0)
        let (afterDetach, _) = try blockTests.submit(driver, type: 0, sector: 3, into: [.writable(blockTests.payload, 512)])
        #expect(afterDetach == 1 && block.capacity == 0, "the detached slot reads nothing")
    }

    @Test func descriptorsThatAreNotDisksAreRefusedAndClosed() throws {
        let (_, block) = try emptySlot()
        // A socket is no disk. That the refused descriptor was closed shows at its peer (a send
        // fails), which a parallel test reusing the descriptor's number cannot fake.
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        #expect(throws: BlockBackendError.self) { try FileBlockBackend(descriptor: pair[0], name: "a socket", readOnly: false) }
        #expect(send(pair[1], "x", 1, Int32(MSG_NOSIGNAL)) < 0, "the refused descriptor is closed")
        close(pair[1])
        let file = TemporaryFile(size: 4096)
        let readOnly = open(file.path, O_RDONLY | O_CLOEXEC)
        #expect(throws: BlockBackendError.self) { try FileBlockBackend(descriptor: readOnly, name: "read-only", readOnly: false) }
        // A read-only disk cannot fill a slot the guest negotiated writes on.
        let reader = try FileBlockBackend(descriptor: open(file.path, O_RDONLY | O_CLOEXEC), name: "reader", readOnly: true)
        #expect(throws: BlockBackendError.self) { try block.attach(reader) }
        #expect(block.advertisedCapacity == 0)
    }
}
