import Crypto
#if canImport(Glibc)
import Glibc
#endif

/// A content digest, `sha256:<64 lowercase hex>` (the only algorithm OCI images use in practice).
public struct Digest: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The 64 lowercase hex digits.
    public let hex: String

    /// Parses `sha256:<hex>`; nil for any other algorithm or a malformed value.
    public init?(_ text: String) {
        guard text.hasPrefix("sha256:") else { return nil }
        let hex = text.dropFirst(7)
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        self.hex = String(hex)
    }

    init(hash: SHA256.Digest) {
        hex = hash.map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
        }.joined()
    }

    public var description: String { "sha256:" + hex }
    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    /// Parses a descriptor's digest, refusing other algorithms with a clear error.
    public static func parse(_ text: String, what: String) throws -> Digest {
        guard let digest = Digest(text) else {
            if let colon = text.firstIndex(of: ":"), text[..<colon] != "sha256" {
                throw ImageError("\(what): digest algorithm '\(text[..<colon])' is not supported (only sha256)")
            }
            throw ImageError("\(what): '\(text)' is not a sha256 digest")
        }
        return digest
    }

    /// The digest of `bytes`.
    public static func of(_ bytes: [UInt8]) -> Digest { Digest(hash: SHA256.hash(data: bytes)) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let digest = Digest(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not a sha256 digest"))
        }
        self = digest
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Hashes bytes as they stream by (a file being copied into the cache).
struct DigestStream {
    private var hasher = SHA256()
    private(set) var count: Int64 = 0

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: bytes)
        count += Int64(bytes.count)
    }

    func finish() -> Digest { Digest(hash: hasher.finalize()) }
}
