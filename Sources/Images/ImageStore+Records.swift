import Foundation

extension ImageStore {
    /// Writes the record for `record.reference` (temp + rename).
    public func save(_ record: ImageRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = temporaryPath("ref")
        defer { unlink(temporary) }
        guard FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(record)) else {
            throw ImageError("cannot write \(temporary)")
        }
        try commit(temporary, to: recordPath(record.reference))
    }

    /// The record for `reference`, or nil when it was never pulled.
    public func record(_ reference: String) -> ImageRecord? {
        guard let data = FileManager.default.contents(atPath: recordPath(reference)) else { return nil }
        return try? JSONDecoder().decode(ImageRecord.self, from: data)
    }

    /// Every record, by reference.
    public func records() -> [ImageRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root + "/refs")) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            FileManager.default.contents(atPath: "\(root)/refs/\(name)").flatMap { try? JSONDecoder().decode(ImageRecord.self, from: $0) }
        }.sorted { $0.reference < $1.reference }
    }

    /// Finds a record by reference or by (a prefix of) its image ID.
    public func find(_ name: String) -> ImageRecord? {
        if let exact = record(name) { return exact }
        let absolute = name.hasPrefix("/") ? name : FileManager.default.currentDirectoryPath + "/" + name
        if let path = record(absolute) { return path }
        let id = name.hasPrefix("sha256:") ? String(name.dropFirst(7)) : name
        let matches = id.count >= 4 ? records().filter { $0.configDigest.hex.hasPrefix(id) } : []
        return matches.count == 1 ? matches[0] : nil
    }

    /// Removes a reference, then every blob and base no reference uses any more. Refuses while a VM
    /// runs on the image's base (it holds a shared lock on it). Returns the bytes freed.
    @discardableResult
    public func remove(_ name: String) throws -> Int64 {
        guard let record = find(name) else { throw ImageError("no image '\(name)' in the cache \(root) (see 'vireo images')") }
        let others = records().filter { $0.reference != record.reference }
        if !others.contains(where: { $0.configDigest == record.configDigest }) {
            let base = basePath(record.configDigest)
            if FileManager.default.fileExists(atPath: base), BaseLock.inUse(base) {
                throw ImageError("image \(record.reference) is in use by a running VM; stop it first")
            }
        }
        unlink(recordPath(record.reference))
        return collectGarbage()
    }

    /// Deletes blobs, bases and image snapshots no record needs; returns the bytes freed.
    @discardableResult
    public func collectGarbage() -> Int64 {
        let kept = records()
        var blobs = Set<String>()
        var bases = Set<String>()
        for record in kept {
            blobs.insert(record.manifestDigest.hex)
            blobs.insert(record.configDigest.hex)
            for layer in record.layers { blobs.insert(layer.hex) }
            bases.insert(record.configDigest.hex + ".ext4")
        }
        var freed: Int64 = 0
        for (directory, keep) in [("/blobs/sha256", blobs), ("/bases", bases)] {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root + directory)) ?? [] where !keep.contains(name) {
                let path = root + directory + "/" + name
                if directory == "/bases" && BaseLock.inUse(path) { continue }
                freed += ImageStore.allocatedBytes(path)
                unlink(path)
            }
        }
        // An image's warm-start snapshots (and their disk templates) go with its base.
        freed += ImageSnapshotCache.collectGarbage(root: root, keptBases: bases, inUse: BaseLock.inUse)
        return freed
    }

    /// Disk use of the cache: blobs, bases and running VMs' overlays (allocated bytes, not apparent size).
    public func diskUsage() -> (blobs: Int64, bases: Int64, runs: Int64) {
        (ImageStore.allocatedBytes(root + "/blobs/sha256"), ImageStore.allocatedBytes(root + "/bases"),
         ImageStore.allocatedBytes(root + "/runs"))
    }

    /// Allocated bytes of a file or a tree (sparse files count what they really use).
    public static func allocatedBytes(_ path: String) -> Int64 {
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        var total = Int64(info.st_blocks) * 512
        if (info.st_mode & S_IFMT) == S_IFDIR {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                total += allocatedBytes(path + "/" + name)
            }
        }
        return total
    }
}
