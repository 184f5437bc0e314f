#if canImport(Glibc)
import Glibc
#endif

/// A copy-on-write disk: an overlay file over a base image that is only ever read. Blocks the guest
/// never wrote are read from the base; written blocks live in the overlay (a sparse file as large as
/// the base). Which 4 KiB blocks the overlay holds is a bitmap kept in `OVERLAY.map`, written after
/// the overlay's data on every flush: a host crash loses at most the writes the guest had not yet
/// flushed, exactly as with a plain image. Clones of one snapshot each get an overlay over one base.
/// @unchecked Sendable: The bitmap and scratch buffer are used only by the VirtioBlock that owns the backend, from its worker under the transport's engine lock.
public final class OverlayBlockBackend: BlockBackend, @unchecked Sendable {
    public static let blockSize = 4096
    static let magic = Array("VIREOMAP".utf8)
    static let headerSize = 16  // magic, then the disk size (little-endian u64)
    /// Bitmap bytes written to the map file as one unit when any bit in them changed.
    static let chunkBytes = 512

    public let path: String
    public let basePath: String
    public let size: UInt64
    public let isReadOnly = false
    private let base: FileBlockBackend
    private let overlay: FileBlockBackend
    private let mapFD: Int32
    private var bitmap: [UInt8]
    private var dirtyChunks: [Bool]
    /// One block, for copy-ups (the worker thread is the only caller: no allocation per request).
    private let scratch: UnsafeMutableRawBufferPointer

    /// Opens `path` over `basePath`; creates the overlay and its map when `path` does not exist.
    public convenience init(path: String, basePath: String) throws(BlockBackendError) {
        let base = try FileBlockBackend(path: basePath, readOnly: true)
        let mapPath = path + ".map"
        var info = stat()
        let fresh = lstat(path, &info) != 0
        if fresh {
            try OverlayBlockBackend.create(path: path, mapPath: mapPath, size: base.size)
        }
        let overlay = try FileBlockBackend(path: path)
        let mapFD: Int32
        switch CheckedOpen.open(mapPath, flags: O_RDWR, noFollow: true, image: true) {
        case let .success(opened): mapFD = opened
        case let .failure(.system(error)): throw BlockBackendError(operation: "open overlay map \(mapPath)", errno: error)
        case let .failure(refusal): throw BlockBackendError(refusal: "overlay map \(mapPath) \(refusal)")
        }
        try self.init(overlay: overlay, mapFD: mapFD, base: base, path: path, basePath: basePath)
    }

    /// An overlay from descriptors (a jailed VMM's hot attach: it cannot open paths): `overlayFD`
    /// and `mapFD` read-write, `baseFD` read-only. Two empty files (a fresh overlay the host just
    /// created) are made a sparse overlay and an all-clear map here, so the format has one owner.
    /// Takes over the three descriptors; all are closed on failure.
    public convenience init(overlayFD: Int32, mapFD: Int32, baseFD: Int32, name: String) throws(BlockBackendError) {
        let base: FileBlockBackend
        do { base = try FileBlockBackend(descriptor: baseFD, name: name + " (base)", readOnly: true) } catch {
            close(overlayFD)
            close(mapFD)
            throw error
        }
        var overlayInfo = stat(), mapInfo = stat()
        guard fstat(overlayFD, &overlayInfo) == 0, fstat(mapFD, &mapInfo) == 0, mapInfo.st_mode & S_IFMT == S_IFREG else {
            close(overlayFD)
            close(mapFD)
            throw BlockBackendError(refusal: "overlay map of \(name) is not a regular file")
        }
        if overlayInfo.st_size == 0 && mapInfo.st_size == 0 {
            do { try OverlayBlockBackend.initialize(overlay: overlayFD, map: mapFD, size: base.size, name: name) } catch {
                close(overlayFD)
                close(mapFD)
                throw error
            }
        }
        let overlay: FileBlockBackend
        do { overlay = try FileBlockBackend(descriptor: overlayFD, name: name, readOnly: false) } catch {
            close(mapFD)
            throw error
        }
        try self.init(overlay: overlay, mapFD: mapFD, base: base, path: name, basePath: name + " (base)")
    }

    private init(overlay: FileBlockBackend, mapFD: Int32, base: FileBlockBackend, path: String, basePath: String) throws(BlockBackendError) {
        guard base.size % UInt64(OverlayBlockBackend.blockSize) == 0 else {
            close(mapFD)
            throw BlockBackendError(operation: "overlay over \(basePath): its size \(base.size) is not a multiple of 4096", errno: EINVAL)
        }
        guard overlay.size == base.size else {
            close(mapFD)
            throw BlockBackendError(operation: "overlay \(path) has \(overlay.size) bytes but its base \(basePath) has \(base.size)", errno: EINVAL)
        }
        let mapPath = path + ".map"
        self.base = base
        self.overlay = overlay
        let blocks = Int(base.size / UInt64(OverlayBlockBackend.blockSize))
        let bitmapBytes = (blocks + 7) / 8
        var header = [UInt8](repeating: 0, count: OverlayBlockBackend.headerSize)
        var bitmap = [UInt8](repeating: 0, count: bitmapBytes)
        let expectedLength = OverlayBlockBackend.headerSize + bitmapBytes
        let fileLength = lseek(mapFD, 0, SEEK_END)
        let headerRead = header.withUnsafeMutableBytes { pread(mapFD, $0.baseAddress, $0.count, 0) }
        let bitmapRead = bitmap.withUnsafeMutableBytes { pread(mapFD, $0.baseAddress, $0.count, off_t(OverlayBlockBackend.headerSize)) }
        let sizeField = header[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard fileLength == expectedLength, headerRead == header.count, bitmapRead == bitmapBytes,
              Array(header[0..<8]) == OverlayBlockBackend.magic, sizeField == base.size else {
            close(mapFD)
            throw BlockBackendError(operation: "overlay map \(mapPath) does not describe a \(base.size)-byte disk (corrupt, or made for another base)", errno: EINVAL)
        }
        self.mapFD = mapFD
        self.bitmap = bitmap
        dirtyChunks = [Bool](repeating: false, count: (bitmapBytes + OverlayBlockBackend.chunkBytes - 1) / OverlayBlockBackend.chunkBytes)
        scratch = .allocate(byteCount: OverlayBlockBackend.blockSize, alignment: 4096)
        self.path = path
        self.basePath = basePath
        size = base.size
    }

    deinit {
        close(mapFD)
        scratch.deallocate()
    }

    /// A sparse overlay of `size` bytes and an all-clear map, both durable before first use.
    private static func create(path: String, mapPath: String, size: UInt64) throws(BlockBackendError) {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BlockBackendError(operation: "create overlay \(path)", errno: errno) }
        defer { close(fd) }
        // O_EXCL: a map planted next to a new overlay (or a link there) is never truncated or followed.
        let map = open(mapPath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard map >= 0 else { throw BlockBackendError(operation: "create overlay map \(mapPath)", errno: errno) }
        defer { close(map) }
        try initialize(overlay: fd, map: map, size: size, name: path)
    }

    /// Sizes an empty overlay and writes an all-clear map (both fsynced).
    private static func initialize(overlay fd: Int32, map: Int32, size: UInt64, name path: String) throws(BlockBackendError) {
        guard ftruncate(fd, off_t(size)) == 0, fsync(fd) == 0 else {
            throw BlockBackendError(operation: "size overlay \(path)", errno: errno)
        }
        let mapPath = path + ".map"
        let blocks = Int(size / UInt64(blockSize))
        var bytes = magic + (0..<8).map { UInt8(truncatingIfNeeded: size >> (8 * UInt64($0))) }
        bytes += [UInt8](repeating: 0, count: (blocks + 7) / 8)
        let written = bytes.withUnsafeBytes { Glibc.write(map, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(map) == 0 else {
            throw BlockBackendError(operation: "write overlay map \(mapPath)", errno: errno)
        }
    }

    // MARK: the bitmap

    private func holds(_ block: Int) -> Bool { bitmap[block >> 3] & (1 << UInt8(block & 7)) != 0 }

    private func mark(_ block: Int) {
        guard !holds(block) else { return }
        bitmap[block >> 3] |= 1 << UInt8(block & 7)
        dirtyChunks[(block >> 3) / OverlayBlockBackend.chunkBytes] = true
    }

    /// Blocks the overlay holds, as a count (for tests and status).
    public var overlaidBlocks: Int { bitmap.reduce(0) { $0 + $1.nonzeroBitCount } }

    // MARK: BlockBackend

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        guard let start = buffer.baseAddress, buffer.count > 0 else { return }
        let blockSize = UInt64(OverlayBlockBackend.blockSize)
        var position = offset
        let end = offset + UInt64(buffer.count)
        while position < end {
            // The longest run of blocks from `position` that come from the same file.
            let fromOverlay = holds(Int(position / blockSize))
            var runEnd = min(end, (position / blockSize + 1) * blockSize)
            while runEnd < end, holds(Int(runEnd / blockSize)) == fromOverlay { runEnd = min(end, runEnd + blockSize) }
            let part = UnsafeMutableRawBufferPointer(start: start + Int(position - offset), count: Int(runEnd - position))
            try (fromOverlay ? overlay : base).read(into: part, at: position)
            position = runEnd
        }
    }

    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        guard buffer.count > 0 else { return }
        let end = offset + UInt64(buffer.count)
        try copyUpPartialBlocks(from: offset, to: end)
        try overlay.write(from: buffer, at: offset)
        markRange(from: offset, to: end)
    }

    public func flush() throws(BlockBackendError) {
        // Data first, then the map that makes it visible: a crash in between loses only the writes
        // of this flush, never shows a block whose data did not reach the disk.
        try overlay.flush()
        var wrote = false
        for (chunk, dirty) in dirtyChunks.enumerated() where dirty {
            let first = chunk * OverlayBlockBackend.chunkBytes
            let count = min(OverlayBlockBackend.chunkBytes, bitmap.count - first)
            let result = bitmap.withUnsafeBytes {
                pwrite(mapFD, $0.baseAddress! + first, count, off_t(OverlayBlockBackend.headerSize + first))
            }
            guard result == count else { throw BlockBackendError(operation: "write overlay map \(path).map", errno: result < 0 ? errno : EIO) }
            dirtyChunks[chunk] = false
            wrote = true
        }
        if wrote, fsync(mapFD) != 0 { throw BlockBackendError(operation: "fsync overlay map \(path).map", errno: errno) }
    }

    /// The range's content becomes unspecified: here, zeroes (the base must not show through).
    public func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError) {
        try writeZeroes(at: offset, length: length, mayUnmap: true)
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError) {
        guard length > 0 else { return }
        try copyUpPartialBlocks(from: offset, to: offset + length)
        try overlay.writeZeroes(at: offset, length: length, mayUnmap: mayUnmap)
        markRange(from: offset, to: offset + length)
    }

    // MARK: helpers

    /// A write that covers only part of a block the overlay does not hold yet first copies that
    /// block from the base, so the rest of it keeps the base's bytes.
    private func copyUpPartialBlocks(from start: UInt64, to end: UInt64) throws(BlockBackendError) {
        let blockSize = UInt64(OverlayBlockBackend.blockSize)
        let first = start / blockSize, last = (end - 1) / blockSize
        try copyUpIfPartial(first, start: start, end: end)
        if last != first { try copyUpIfPartial(last, start: start, end: end) }
    }

    private func copyUpIfPartial(_ block: UInt64, start: UInt64, end: UInt64) throws(BlockBackendError) {
        let blockStart = block * UInt64(OverlayBlockBackend.blockSize)
        let covered = start <= blockStart && end >= blockStart + UInt64(OverlayBlockBackend.blockSize)
        guard !covered, !holds(Int(block)) else { return }
        try base.read(into: scratch, at: blockStart)
        try overlay.write(from: UnsafeRawBufferPointer(scratch), at: blockStart)
        mark(Int(block))
    }

    private func markRange(from start: UInt64, to end: UInt64) {
        let blockSize = UInt64(OverlayBlockBackend.blockSize)
        for block in (start / blockSize)...((end - 1) / blockSize) { mark(Int(block)) }
    }
}
