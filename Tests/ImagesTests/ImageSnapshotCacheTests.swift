import Foundation
import Testing
@testable import Images

/// The per-image snapshot cache: its key, what a usable entry holds, its lock, its eviction with the
/// base, and the sparse copy that gives each run its own root disk from the template.
@Suite struct ImageSnapshotCacheTests {
    private func scratch() throws -> (store: ImageStore, base: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-image-snap-\(UInt64.random(in: 0...UInt64.max))").path
        let store = try ImageStore(stateDirectory: dir + "/state")
        try FileManager.default.createDirectory(atPath: store.root + "/bases", withIntermediateDirectories: true)
        let base = store.root + "/bases/" + String(repeating: "ab", count: 32) + ".ext4"
        try Data("ext4".utf8).write(to: URL(fileURLWithPath: base))
        return (store, base)
    }

    private func commitEntry(_ cache: ImageSnapshotCache, base: String, key: String) throws {
        let staging = try cache.warm.stage(key)
        try FileManager.default.createDirectory(atPath: staging + "/snapshot", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        for file in ["state.bin", "memory.bin"] + ImageSnapshotCache.templateFiles {
            try Data([1]).write(to: URL(fileURLWithPath: "\(staging)/snapshot/\(file)"))
        }
        try cache.commit(staging: staging, base: base, key: key)
        #expect(!FileManager.default.fileExists(atPath: staging), "the staging directory is gone")
    }

    @Test func theKeyFollowsTheGenericKeyAndTheBasesIdentity() throws {
        let (_, base) = try scratch()
        let key = try ImageSnapshotCache.key(generic: "g1", base: base)
        #expect(key.count == 64 && key != "g1")
        #expect(try ImageSnapshotCache.key(generic: "g1", base: base) == key)
        #expect(try ImageSnapshotCache.key(generic: "g2", base: base) != key)
        // The same name built again is another file system: another key.
        unlink(base)
        try Data("ext4".utf8).write(to: URL(fileURLWithPath: base))
        #expect(try ImageSnapshotCache.key(generic: "g1", base: base) != key)
        #expect(throws: ImageError.self) { try ImageSnapshotCache.key(generic: "g1", base: base + ".missing") }
    }

    @Test func anEntryNeedsItsTemplateAndOneRunMakesItAtATime() throws {
        let (store, base) = try scratch()
        let cache = try ImageSnapshotCache(store: store)
        #expect(try cache.lookup(base: base, key: "k1") == nil)
        let lock = try #require(try cache.tryLock(base: base, key: "k1"))
        #expect(try cache.tryLock(base: base, key: "k1") == nil, "a second maker gives way at once")
        try commitEntry(cache, base: base, key: "k1")
        withExtendedLifetime(lock) {}
        #expect(try cache.lookup(base: base, key: "k1") == cache.path(base: base, key: "k1"))
        #expect(cache.path(base: base, key: "k1").hasSuffix("/warm/images/" + String(repeating: "ab", count: 32) + "/k1"))
        unlink(cache.path(base: base, key: "k1") + "/root.overlay.map")
        #expect(throws: ImageError.self) { try cache.lookup(base: base, key: "k1") }
        cache.discard(base: base, key: "k1")
        #expect(try cache.lookup(base: base, key: "k1") == nil)
    }

    @Test func garbageCollectionRemovesTheSnapshotsOfRemovedBasesOnly() throws {
        let (store, base) = try scratch()
        let cache = try ImageSnapshotCache(store: store)
        let other = store.root + "/bases/" + String(repeating: "cd", count: 32) + ".ext4"
        try Data("ext4".utf8).write(to: URL(fileURLWithPath: other))
        try commitEntry(cache, base: base, key: "k1")
        try commitEntry(cache, base: other, key: "k2")
        let kept: Set<String> = [String(repeating: "ab", count: 32) + ".ext4"]
        // In use: kept whatever the records say.
        #expect(ImageSnapshotCache.collectGarbage(root: store.root, keptBases: kept, inUse: { _ in true }) == 0)
        #expect(try cache.lookup(base: other, key: "k2") != nil)
        #expect(ImageSnapshotCache.collectGarbage(root: store.root, keptBases: kept, inUse: { _ in false }) > 0)
        #expect(try cache.lookup(base: other, key: "k2") == nil)
        #expect(!FileManager.default.fileExists(atPath: cache.baseDirectory(other)))
        #expect(try cache.lookup(base: base, key: "k1") != nil)
    }

    @Test func aSparseCopyKeepsTheDataAndTheHoles() throws {
        let (store, _) = try scratch()
        let source = store.root + "/sparse", target = store.root + "/copy"
        let fd = open(source, O_RDWR | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        let size: off_t = 64 << 20
        ftruncate(fd, size)
        let chunk = [UInt8](repeating: 0x5a, count: 8192)
        for offset: off_t in [0, 20 << 20, size - 8192] { _ = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, offset) } }
        close(fd)
        try SparseCopy.copy(source, to: target)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target)) == Data(contentsOf: URL(fileURLWithPath: source)))
        var info = stat()
        stat(target, &info)
        #expect(info.st_size == size && Int64(info.st_blocks) * 512 < 1 << 20, "allocated \(info.st_blocks * 512) bytes")
        #expect(throws: ImageError.self) { try SparseCopy.copy(source, to: target) }  // never over an existing file
    }
}
