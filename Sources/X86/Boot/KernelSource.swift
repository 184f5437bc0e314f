import Memory

/// Random access to a kernel or initrd file. Booting through it never holds the file whole: an ELF
/// kernel's headers and notes are read a page at a time to parse it, and its segments, like an
/// initrd, are read straight into guest RAM (a 17 MiB vmlinux used to cost its size in VMM heap).
public protocol KernelSource {
    /// The file's size in bytes.
    var size: Int { get }
    /// Fills `destination` with the bytes at `offset` (`offset + destination.count <= size`);
    /// 0 on success, else the errno of the failed read (EIO for a file that got shorter).
    func read(at offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Int32
}

/// An image already in memory, as a `KernelSource` (tests, and formats that need the whole file).
public struct InMemoryKernelSource: KernelSource {
    let bytes: UnsafeRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var size: Int { bytes.count }

    public func read(at offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Int32 {
        guard offset >= 0, destination.count <= bytes.count - min(offset, bytes.count) else { return 5 /* EIO */ }
        destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + destination.count)]))
        return 0
    }
}

/// Why reading a kernel or initrd file failed part way.
public struct KernelReadError: Error, Equatable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var count: Int
    /// The failed read's errno; 0 when nothing failed to read but `PagedImage`'s bound was reached.
    public var errno: Int32
    /// The file's headers and notes span more pages than `PagedImage` keeps (no read failed).
    public var pageBoundReached = false

    public var description: String {
        if pageBoundReached {
            return "its headers and notes span more than \(PagedImage.maximumPages * PagedImage.pageSize / 1024) KiB (read up to offset \(offset))"
        }
        return "cannot read \(count) bytes at offset \(offset) of the file (errno \(errno))"
    }
}

extension KernelSource {
    /// Reads `count` bytes at `offset` into a new array (the range must lie inside the file).
    func bytes(at offset: Int, count: Int) throws(KernelReadError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        let status = result.withUnsafeMutableBytes { read(at: offset, into: $0) }
        guard status == 0 else { throw KernelReadError(offset: offset, count: count, errno: status) }
        return result
    }

    /// Copies `count` bytes at `offset` to guest-physical `address`, straight into guest RAM.
    func copy(at offset: Int, count: Int, to address: UInt64, in memory: GuestMemory) throws(KernelCopyError) {
        guard count > 0 else { return }
        let destination: UnsafeMutableRawBufferPointer
        do { destination = try memory.buffer(at: address, length: count) } catch { throw .memory(error) }
        let status = read(at: offset, into: destination)
        guard status == 0 else { throw .read(KernelReadError(offset: offset, count: count, errno: status)) }
    }
}

/// A copy from a kernel file into guest RAM that failed: the guest range or the read.
enum KernelCopyError: Error {
    case memory(GuestMemoryError)
    case read(KernelReadError)
}

/// An ELF kernel's bytes for the parser, read from a `KernelSource` a page at a time as the parser
/// asks for them (headers, program headers, notes: a few pages of a multi-MiB file). A failed read
/// reads as zeros and is remembered; the parse then reports it instead of what the zeros caused.
final class PagedImage: ImageReading {
    static let pageSize = 4096
    /// Pages kept at most: the parser reads headers and notes, never bulk data.
    static let maximumPages = 256

    let source: any KernelSource
    private var pages: [Int: [UInt8]] = [:]
    private(set) var failure: KernelReadError?

    init(_ source: any KernelSource) { self.source = source }

    var count: Int { source.size }

    func u8(_ offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset < count, "unchecked image read")
        let index = offset / PagedImage.pageSize
        if let page = pages[index] { return page[offset - index * PagedImage.pageSize] }
        guard failure == nil, pages.count < PagedImage.maximumPages else {
            if failure == nil { failure = KernelReadError(offset: offset, count: 1, errno: 0, pageBoundReached: true) }
            return 0
        }
        let start = index * PagedImage.pageSize
        do {
            let page = try source.bytes(at: start, count: min(PagedImage.pageSize, count - start))
            pages[index] = page
            return page[offset - start]
        } catch {
            failure = error
            return 0
        }
    }
}
