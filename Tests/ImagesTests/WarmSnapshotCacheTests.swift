import Foundation
import Testing
@testable import Images

/// The warm-start snapshot cache: what its key depends on, and which directories it refuses to trust.
@Suite struct WarmSnapshotCacheTests {
    private func scratch() throws -> (store: ImageStore, kernel: String, initramfs: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-warm-cache-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("kernel".utf8).write(to: URL(fileURLWithPath: dir + "/vmlinux"))
        try Data("init".utf8).write(to: URL(fileURLWithPath: dir + "/initramfs.cpio"))
        return (try ImageStore(stateDirectory: dir + "/state"), dir + "/vmlinux", dir + "/initramfs.cpio")
    }

    private func inputs(_ kernel: String, _ initramfs: String, cpus: String = "", memory: String = "256M") -> WarmSnapshotCache.Inputs {
        .init(kernel: kernel, initramfs: initramfs, commandLine: "console=ttyS0", cpus: cpus, memory: memory, build: "b1")
    }

    @Test func theKeyFollowsTheKernelsBytesAndTheShape() throws {
        let (_, kernel, initramfs) = try scratch()
        let key = try WarmSnapshotCache.key(inputs(kernel, initramfs))
        #expect(key.count == 64)
        #expect(try WarmSnapshotCache.key(inputs(kernel, initramfs)) == key)
        #expect(try WarmSnapshotCache.key(inputs(kernel, initramfs, cpus: "2")) != key)
        #expect(try WarmSnapshotCache.key(inputs(kernel, initramfs, memory: "512M")) != key)
        try Data("kernel, rebuilt".utf8).write(to: URL(fileURLWithPath: kernel))
        #expect(try WarmSnapshotCache.key(inputs(kernel, initramfs)) != key)
        #expect(throws: ImageError.self) { try WarmSnapshotCache.key(inputs(kernel + ".missing", initramfs)) }
    }

    @Test func onlyOwnUnwritableSnapshotsAreUsedAndCommitsAreWhole() throws {
        let (store, _, _) = try scratch()
        let cache = try WarmSnapshotCache(store: store)
        #expect(try cache.lookup("k1") == nil, "nothing cached")
        let lock = try cache.lock("k1")
        let staging = try cache.stage("k1")
        try FileManager.default.createDirectory(atPath: staging + "/snapshot", withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        for file in ["state.bin", "memory.bin"] { try Data([1]).write(to: URL(fileURLWithPath: "\(staging)/snapshot/\(file)")) }
        try cache.commit(staging: staging, key: "k1")
        withExtendedLifetime(lock) {}
        #expect(!FileManager.default.fileExists(atPath: staging), "the staging directory is gone")
        #expect(try cache.lookup("k1") == cache.path("k1"))

        // Writable by others, or a link in the snapshot's place: refused with the reason.
        chmod(cache.path("k1") + "/state.bin", 0o666)
        #expect(throws: ImageError.self) { try cache.lookup("k1") }
        chmod(cache.path("k1") + "/state.bin", 0o600)
        unlink(cache.path("k1") + "/memory.bin")
        symlink("/etc/passwd", cache.path("k1") + "/memory.bin")
        #expect(throws: ImageError.self) { try cache.lookup("k1") }
        cache.discard("k1")
        #expect(try cache.lookup("k1") == nil)
        #expect(FileManager.default.fileExists(atPath: "/etc/passwd"), "discard removed the link, not its target")

        // The cache directory itself must not be writable by others.
        chmod(cache.directory, 0o777)
        #expect(throws: ImageError.self) { try WarmSnapshotCache(store: store) }
        chmod(cache.directory, 0o700)
    }
}
