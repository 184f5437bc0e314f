import Foundation

/// Builds (once per image config) the ext4 root filesystem every VM of the image gets an overlay on:
/// the layers are applied to a staging directory, checked against the config's `diff_ids`, and
/// `mke2fs -d` turns the directory into the filesystem. Work happens under tmp/ and is renamed into
/// place; a lock file keeps two builds of one image from racing.
public struct BaseBuilder {
    public let store: ImageStore
    public var progress: (String) -> Void
    /// Free space the filesystem gets beyond the image's content (sparse: costs nothing until written).
    public var freeBytes: Int64 = 1 << 30

    public init(store: ImageStore, progress: @escaping (String) -> Void = { _ in }) {
        self.store = store
        self.progress = progress
    }

    /// The base image's path; `built` is false when it was already cached.
    public func base(for record: ImageRecord) throws -> (path: String, built: Bool) {
        let final = store.basePath(record.configDigest)
        if FileManager.default.fileExists(atPath: final) { return (final, false) }
        let lockPath = "\(store.root)/bases/.\(record.configDigest.hex).lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw ImageError("cannot create \(lockPath): \(String(cString: strerror(errno)))") }
        // The lock file stays: unlinking it while another builder waits on it would let a third
        // lock a fresh file and build at the same time.
        defer { close(lock) }
        guard flock(lock, LOCK_EX) == 0 else { throw ImageError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        if FileManager.default.fileExists(atPath: final) { return (final, false) }

        let config = try ImageConfigReader.read(store: store, digest: record.configDigest)
        let diffIDs = config.rootfs?.diff_ids ?? []
        guard diffIDs.count == record.layers.count else {
            throw ImageError("the config lists \(diffIDs.count) layers, the manifest \(record.layers.count)")
        }
        let staging = store.temporaryPath("rootfs")
        guard mkdir(staging, 0o755) == 0 else { throw ImageError("cannot create \(staging): \(String(cString: strerror(errno)))") }
        defer { SafeTree.removeAll(staging) }
        let applier = try LayerApplier(root: staging)
        for (index, layer) in record.layers.enumerated() {
            progress("unpacking layer \(index + 1)/\(record.layers.count) \(layer.hex.prefix(12))")
            let stream = try LayerStream(path: store.blobPath(layer))
            defer { stream.cancel() }
            let name = "\(index + 1) (\(layer.hex.prefix(12)))"
            let diff = try applier.apply(layer: stream.fd, name: name)
            try stream.finish()
            guard diff.description == diffIDs[index] else {
                throw ImageError("layer \(name): uncompressed content is \(diff), the config says \(diffIDs[index]); refusing it")
            }
        }
        BaseBuilder.addMountPoints(staging)
        if applier.ownershipSkipped {
            progress("warning: not root, so files keep the caller's owner instead of the image's")
        }
        let temporary = store.temporaryPath("base")
        defer { unlink(temporary) }
        let blocks = BaseBuilder.blocks(dataBytes: applier.dataBytes, inodes: applier.inodes, free: freeBytes)
        let log = "\(store.logDirectory)/mke2fs-\(record.configDigest.hex.prefix(12)).log"
        progress("building the ext4 base (mke2fs -d; log: \(log))")
        // The file is new and sparse, so inode tables and journal read as zeros without being written
        // (lazy init keeps the base small); the guest mounts with noinit_itable so its kernel does not
        // zero them either (that would cost boot time and land in every VM's overlay).
        // No metadata checksums: every inode, directory block and bitmap the guest reads would be
        // checked with crc32c in guest kernel mode (a large part of a warm start's mount on PVM
        // hosts). They guard against a disk corrupting metadata; the base is written here and checked
        // against the layers' digests, and each overlay lives as long as its VM (or a daemon VM).
        // uninit_bg (a crc16 per group descriptor, checked once at mount) keeps the lazy inode
        // tables that metadata_csum gave: without either, mke2fs writes every table (~4 MiB more).
        try Tool.run("mke2fs", ["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-N", String(applier.inodes + 16384),
                                "-O", "^metadata_csum,uninit_bg",
                                "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard", "-L", "vireo-root",
                                "-d", staging, temporary, String(blocks)], log: log, package: "e2fsprogs")
        try store.commit(temporary, to: final)
        return (final, true)
    }

    /// Where the image init mounts the pseudo-filesystems (guest/image-init.c). The init creates the
    /// missing ones at every boot as runc does; made here they cost the guest nothing (creating a
    /// directory at boot allocates an inode and a block, which loads the group's bitmaps in emulated
    /// kernel mode on PVM hosts). Only missing names are added; an image's own file or link there is
    /// left as it is (mkdir never follows a link).
    static let mountPoints = ["proc", "sys", "dev", "run"]

    static func addMountPoints(_ staging: String) {
        for name in mountPoints {
            _ = mkdir("\(staging)/\(name)", 0o755)
        }
    }

    /// Filesystem size in 4 KiB blocks: the data, an allowance per inode, metadata slack, free space.
    static func blocks(dataBytes: Int64, inodes: Int, free: Int64) -> Int64 {
        let content = dataBytes + Int64(inodes) * 4096
        let bytes = content + content / 5 + free + (64 << 20)
        return (bytes + 4095) / 4096
    }
}
