import Foundation
@testable import Manager
import Testing

/// `ImageRoots.resolve`: links and `..` are followed only while they stay inside a root.
@Suite struct ImageRootsTests {
    @Test func resolvesInsideAndRefusesEscapes() throws {
        let base = "/tmp/vireo-roots-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        for dir in ["root/sub", "other", "outside"] {
            try FileManager.default.createDirectory(atPath: base + "/" + dir, withIntermediateDirectories: true)
        }
        FileManager.default.createFile(atPath: base + "/root/sub/file", contents: Data())
        FileManager.default.createFile(atPath: base + "/other/file", contents: Data())
        FileManager.default.createFile(atPath: base + "/outside/secret", contents: Data())
        symlink("sub/file", base + "/root/inside")
        symlink(base + "/other/file", base + "/root/to-other")
        symlink(base + "/outside/secret", base + "/root/absolute-out")
        symlink("../outside/secret", base + "/root/relative-out")
        symlink("loop", base + "/root/loop")
        let roots = ImageRoots([base + "/root", base + "/other"])

        #expect(try roots.resolve(base + "/root/sub/file") == base + "/root/sub/file")
        #expect(try roots.resolve(base + "/root/inside") == base + "/root/sub/file")
        #expect(try roots.resolve(base + "/root/sub/../inside") == base + "/root/sub/file")
        #expect(try roots.resolve(base + "/root/to-other") == base + "/other/file")
        #expect(try roots.resolve(base + "/root/new.ovl") == base + "/root/new.ovl", "a missing tail is kept")
        #expect(throws: ImageRoots.Refusal.outside(roots.directories)) { try roots.resolve(base + "/outside/secret") }
        #expect(throws: ImageRoots.Refusal.linkLeaves(roots.directories)) { try roots.resolve(base + "/root/absolute-out") }
        #expect(throws: ImageRoots.Refusal.linkLeaves(roots.directories)) { try roots.resolve(base + "/root/relative-out") }
        #expect(throws: ImageRoots.Refusal.linkLeaves(roots.directories)) { try roots.resolve(base + "/root/../outside/secret") }
        #expect(throws: ImageRoots.Refusal.tooManyLinks) { try roots.resolve(base + "/root/loop") }
        #expect(try ImageRoots(["/"]).resolve(base + "/outside/secret") == base + "/outside/secret")
    }
}
