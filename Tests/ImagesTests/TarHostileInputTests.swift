import Foundation
import Testing
@testable import Images

/// Headers a hostile image can craft: each is refused with an error (a Swift trap here would crash
/// the root process that imports the image).
@Suite struct TarHostileInputTests {
    /// One ustar header block; `patch` edits it before the checksum is computed.
    private func block(_ name: String, type: Character, size: Int, patch: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 512)
        func put(_ offset: Int, _ text: String) { for (i, c) in text.utf8.enumerated() { bytes[offset + i] = c } }
        put(0, name)
        let octal = String(size, radix: 8)
        put(124, String(repeating: "0", count: 11 - octal.count) + octal)
        bytes[156] = UInt8(ascii: type.unicodeScalars.first!)
        put(257, "ustar")
        put(263, "00")
        patch(&bytes)
        for index in 148..<156 { bytes[index] = 32 }
        let sum = String(bytes.reduce(0) { $0 + Int($1) }, radix: 8)
        put(148, String(repeating: "0", count: 6 - sum.count) + sum)
        bytes[154] = 0
        return bytes
    }

    private func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512) }

    /// A PAX extended header carrying `records` (raw "LENGTH KEY=VALUE\n" text).
    private func pax(_ records: String) -> [UInt8] {
        block("PaxHeader", type: "x", size: records.utf8.count) + padded(Array(records.utf8))
    }

    private func read(_ bytes: [UInt8]) throws {
        let path = NSTemporaryDirectory() + "vireo-hostile-\(UUID().uuidString).tar"
        try Data(bytes + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let reader = TarReader(fd: fd)
        while try reader.next() != nil {}
    }

    @Test func aBase256ChecksumFieldIsRefused() {
        var header = block("file", type: "0", size: 0)
        header[148] = 0x80
        #expect(throws: ImageError.self) { try read(header) }
    }

    @Test func base256EightByteFieldsParse() throws {
        // GNU tar writes uids of 2^21 and more this way.
        try read(block("file", type: "0", size: 0) { header in
            header[108] = 0x80
            header[115] = 0x01
        })
    }

    @Test func aHugePAXSizeOnASymlinkIsRefused() {
        let record = " size=9223372036854775807\n"
        let text = "\(record.utf8.count + 2)\(record)"
        #expect(throws: ImageError.self) { try read(pax(text) + block("link", type: "2", size: 0)) }
    }

    @Test func aPAXRecordLengthThatOverflowsIsRefused() {
        #expect(throws: ImageError.self) { try read(pax("6 a=b\n9223372036854775807 x=y\n") + block("file", type: "0", size: 0)) }
    }

    @Test func tooManyPAXHeadersForOneMemberAreRefused() {
        let value = String(repeating: "v", count: 1 << 20 - 64)
        let body = " comment=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length += 1 }
        let one = pax("\(length)\(body)")
        #expect(throws: ImageError.self) { try read(one + one + one + one + one + block("file", type: "0", size: 0)) }
    }

    @Test func deepAndLongPathsAreRefused() {
        #expect(throws: ImageError.self) { try SafeTree.components(Array(repeating: "a", count: 300).joined(separator: "/")) }
        #expect(throws: ImageError.self) { try SafeTree.components(String(repeating: "x", count: 5000)) }
        #expect((try? SafeTree.components(Array(repeating: "a", count: 200).joined(separator: "/")))?.count == 200)
    }
}
