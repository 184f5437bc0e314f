/// How much one image may unpack to (a hostile layer can be a decompression bomb): checked as bytes
/// are written, so the cache's disk never fills past it.
struct UnpackBudget {
    /// 64 GiB of file data and 4 million entries per image: beyond real images, bounded for bombs.
    static let maxBytes: Int64 = 64 << 30
    static let maxEntries = 4_000_000

    private(set) var bytes: Int64 = 0
    private(set) var entries = 0

    /// Counts `count` more bytes of file data; throws past the limit.
    mutating func spend(bytes count: Int) throws(ImageError) {
        bytes += Int64(count)
        guard bytes <= UnpackBudget.maxBytes else {
            throw ImageError("the image unpacks to more than \(UnpackBudget.maxBytes >> 30) GiB; refusing it")
        }
    }

    /// Counts one more entry; throws past the limit.
    mutating func spendEntry() throws(ImageError) {
        entries += 1
        guard entries <= UnpackBudget.maxEntries else {
            throw ImageError("the image has more than \(UnpackBudget.maxEntries) entries; refusing it")
        }
    }
}
