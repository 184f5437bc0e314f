import Devices
import Foundation
import Testing

/// Copy-on-write disks: the base is never written, unwritten blocks read through, partial writes
/// keep the rest of the block, flushed writes survive a reopen, and bad overlays are refused.
@Suite struct OverlayBlockBackendTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "vireo-overlay-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// A base of `blocks` 4 KiB blocks whose byte i is `i % 251`.
    private func makeBase(blocks: Int = 16) throws -> (path: String, bytes: [UInt8]) {
        let bytes = (0..<(blocks * 4096)).map { UInt8($0 % 251) }
        let path = directory + "/base.img"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, bytes)
    }

    private func read(_ backend: OverlayBlockBackend, _ offset: Int, _ count: Int) throws -> [UInt8] {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { raw.deallocate() }
        try backend.read(into: raw, at: UInt64(offset))
        return Array(raw)
    }

    private func write(_ backend: OverlayBlockBackend, _ offset: Int, _ bytes: [UInt8]) throws {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { raw.deallocate() }
        raw.copyBytes(from: bytes)
        try backend.write(from: UnsafeRawBufferPointer(raw), at: UInt64(offset))
    }

    @Test func readsThroughAndKeepsTheBaseUntouched() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (basePath, base) = try makeBase()
        let overlay = try OverlayBlockBackend(path: directory + "/a.ovl", basePath: basePath)
        #expect(overlay.size == UInt64(base.count))
        #expect(try read(overlay, 0, base.count) == base, "a fresh overlay reads as its base")

        // A 512-byte write in the middle of block 2 and one across the boundary of blocks 5 and 6.
        try write(overlay, 2 * 4096 + 1024, [UInt8](repeating: 0xAA, count: 512))
        try write(overlay, 6 * 4096 - 100, [UInt8](repeating: 0xBB, count: 200))
        var expected = base
        for i in (2 * 4096 + 1024)..<(2 * 4096 + 1536) { expected[i] = 0xAA }
        for i in (6 * 4096 - 100)..<(6 * 4096 + 100) { expected[i] = 0xBB }
        #expect(try read(overlay, 0, base.count) == expected, "the rest of a partly written block keeps the base's bytes")
        #expect(try read(overlay, 2 * 4096 + 1000, 600) == Array(expected[(2 * 4096 + 1000)..<(2 * 4096 + 1600)]))
        #expect(overlay.overlaidBlocks == 3)
        #expect(try Data(contentsOf: URL(fileURLWithPath: basePath)) == Data(base), "the base is never written")

        // Write-zeroes and discard read as zeroes, not as the base.
        try overlay.writeZeroes(at: 8 * 4096, length: 8192, mayUnmap: true)
        try overlay.discard(at: 12 * 4096 + 512, length: 1024)
        #expect(try read(overlay, 8 * 4096, 8192) == [UInt8](repeating: 0, count: 8192))
        #expect(try read(overlay, 12 * 4096 + 512, 1024) == [UInt8](repeating: 0, count: 1024))
        #expect(try read(overlay, 12 * 4096, 512) == Array(base[(12 * 4096)..<(12 * 4096 + 512)]))
    }

    @Test func flushedWritesSurviveAReopenAndUnflushedOnesReadAsTheBase() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (basePath, base) = try makeBase()
        let path = directory + "/b.ovl"
        do {
            let overlay = try OverlayBlockBackend(path: path, basePath: basePath)
            try write(overlay, 4096, [UInt8](repeating: 0x11, count: 4096))
            try overlay.flush()
            try write(overlay, 3 * 4096, [UInt8](repeating: 0x22, count: 4096))  // never flushed
        }
        let reopened = try OverlayBlockBackend(path: path, basePath: basePath)
        #expect(try read(reopened, 4096, 4096) == [UInt8](repeating: 0x11, count: 4096))
        #expect(try read(reopened, 3 * 4096, 4096) == Array(base[(3 * 4096)..<(4 * 4096)]),
                "a write whose flush never came is not shown (its block map bit was not made durable)")
        #expect(reopened.overlaidBlocks == 1)
    }

    @Test func badOverlaysAreRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (basePath, _) = try makeBase()
        func refused(_ path: String, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try OverlayBlockBackend(path: path, basePath: basePath)
                Issue.record("accepted \(path)", sourceLocation: sourceLocation)
            } catch {
                #expect(error.description.contains(text), "\(error)", sourceLocation: sourceLocation)
            }
        }
        // An overlay without its map: which blocks it holds is unknown.
        try Data(count: 16 * 4096).write(to: URL(fileURLWithPath: directory + "/nomap.ovl"))
        refused(directory + "/nomap.ovl", "map")
        // An overlay of another size.
        _ = try OverlayBlockBackend(path: directory + "/c.ovl", basePath: basePath)
        try Data(count: 4096).write(to: URL(fileURLWithPath: directory + "/c.ovl"))
        refused(directory + "/c.ovl", "has 4096 bytes")
        // A map that is not one.
        _ = try OverlayBlockBackend(path: directory + "/d.ovl", basePath: basePath)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: directory + "/d.ovl.map"))
        refused(directory + "/d.ovl", "corrupt")
        // A base that is missing.
        do {
            _ = try OverlayBlockBackend(path: directory + "/e.ovl", basePath: directory + "/missing.img")
            Issue.record("accepted a missing base")
        } catch {
            #expect(error.description.contains("missing.img"))
        }
    }

    @Test func randomWritesMatchAPlainImage() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (basePath, base) = try makeBase(blocks: 32)
        // In a scope of its own: the overlay is write-locked until it is released.
        let model = try { () throws -> [UInt8] in
            let overlay = try OverlayBlockBackend(path: directory + "/r.ovl", basePath: basePath)
            var model = base
            var generator = SystemRandomNumberGenerator()
            for round in 0..<300 {
                let offset = Int.random(in: 0..<(model.count - 1), using: &generator)
                let count = Int.random(in: 1...min(9000, model.count - offset), using: &generator)
                switch round % 3 {
                case 0, 1:
                    let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
                    try write(overlay, offset, bytes)
                    model.replaceSubrange(offset..<(offset + count), with: bytes)
                default:
                    try overlay.writeZeroes(at: UInt64(offset), length: UInt64(count), mayUnmap: Bool.random(using: &generator))
                    model.replaceSubrange(offset..<(offset + count), with: [UInt8](repeating: 0, count: count))
                }
                if round % 50 == 0 { try overlay.flush() }
            }
            #expect(try read(overlay, 0, model.count) == model)
            try overlay.flush()
            return model
        }()
        #expect(try read(try OverlayBlockBackend(path: directory + "/r.ovl", basePath: basePath), 0, model.count) == model)
        #expect(try Data(contentsOf: URL(fileURLWithPath: basePath)) == Data(base))
    }
}
