import Foundation
import Testing
@testable import Images

/// The tar reader against archives written by TarWriter and by GNU tar.
@Suite struct TarReaderTests {
    private func read(_ bytes: [UInt8]) throws -> [(TarEntry, [UInt8])] {
        let path = NSTemporaryDirectory() + "vireo-tar-\(UUID().uuidString)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let reader = TarReader(fd: fd)
        var result: [(TarEntry, [UInt8])] = []
        while let entry = try reader.next() {
            var data: [UInt8] = []
            try reader.readData { data += $0 }
            result.append((entry, data))
        }
        return result
    }

    @Test func readsEveryKindWithLongNamesAndXattrs() throws {
        var writer = TarWriter()
        let longName = "deep/" + String(repeating: "d", count: 120) + "/file"
        writer.add(TarEntry(path: "bin/", kind: .directory, mode: 0o755))
        writer.add(TarEntry(path: "bin/tool", kind: .file, mode: 0o4755, uid: 1000, gid: 50, modificationTime: 1_700_000_000,
                            xattrs: ["security.capability": [1, 2, 3]]), data: Array("hello".utf8))
        writer.add(TarEntry(path: longName, kind: .file), data: [UInt8](repeating: 7, count: 1000))
        writer.add(TarEntry(path: "bin/link", kind: .symlink, mode: 0o777, linkTarget: "tool"))
        writer.add(TarEntry(path: "bin/hard", kind: .hardLink, linkTarget: "bin/tool"))
        writer.finish()
        let entries = try read(writer.bytes)
        #expect(entries.map(\.0.path) == ["bin/", "bin/tool", longName, "bin/link", "bin/hard"])
        #expect(entries[1].0.mode == 0o4755 && entries[1].0.uid == 1000 && entries[1].0.gid == 50)
        #expect(entries[1].0.modificationTime == 1_700_000_000)
        #expect(entries[1].0.xattrs["security.capability"] == [1, 2, 3])
        #expect(entries[1].1 == Array("hello".utf8))
        #expect(entries[2].1.count == 1000)
        #expect(entries[3].0.kind == .symlink && entries[3].0.linkTarget == "tool")
        #expect(entries[4].0.kind == .hardLink && entries[4].0.linkTarget == "bin/tool")
    }

    @Test func readsGNUTar() throws {
        let directory = NSTemporaryDirectory() + "vireo-gnutar-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory + "/a/" + String(repeating: "x", count: 150), withIntermediateDirectories: true)
        try Data("content".utf8).write(to: URL(fileURLWithPath: directory + "/a/file"))
        symlink("file", directory + "/a/sym")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        process.arguments = ["-C", directory, "-cf", directory + ".tar", "a"]
        try process.run()
        process.waitUntilExit()
        defer { unlink(directory + ".tar") }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + ".tar")))
        let entries = try read(bytes)
        #expect(entries.contains { $0.0.path == "a/file" && $0.1 == Array("content".utf8) })
        #expect(entries.contains { $0.0.path == "a/sym" && $0.0.kind == .symlink && $0.0.linkTarget == "file" })
        #expect(entries.contains { $0.0.path.hasPrefix("a/" + String(repeating: "x", count: 150)) && $0.0.kind == .directory })
    }

    @Test func refusesCorruptAndTruncatedArchives() throws {
        var writer = TarWriter()
        writer.add(TarEntry(path: "file", kind: .file), data: [UInt8](repeating: 1, count: 2000))
        writer.finish()
        var corrupt = writer.bytes
        corrupt[10] ^= 0xff
        #expect(throws: ImageError.self) { try read(corrupt) }
        #expect(throws: ImageError.self) { try read(Array(writer.bytes.prefix(1024))) }
    }
}
