import Foundation
import Testing
@testable import Images

/// OCI layer semantics (whiteouts, opaque directories, links) and the refusals of hostile layers.
@Suite struct LayerApplierTests {
    private let root: String

    init() throws {
        root = NSTemporaryDirectory() + "vireo-layers-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/rootfs", withIntermediateDirectories: true)
    }

    private func layer(_ build: (inout TarWriter) -> Void) -> [UInt8] {
        var writer = TarWriter()
        build(&writer)
        writer.finish()
        return writer.bytes
    }

    private func apply(_ applier: LayerApplier, _ bytes: [UInt8]) throws -> Digest {
        let path = root + "/layer-\(UUID().uuidString).tar"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        return try applier.apply(layer: fd, name: "test")
    }

    /// Every path under the root, with a kind letter (d, f, l), sorted.
    private func tree() throws -> [String] {
        let base = root + "/rootfs"
        let paths = FileManager.default.enumerator(atPath: base)?.allObjects as? [String] ?? []
        return try paths.sorted().map { path in
            let attributes = try FileManager.default.attributesOfItem(atPath: base + "/" + path)
            let type = attributes[.type] as? FileAttributeType
            return (type == .typeDirectory ? "d " : type == .typeSymbolicLink ? "l " : "f ") + path
        }
    }

    @Test func whiteoutsOpaqueDirectoriesAndLinks() throws {
        let applier = try LayerApplier(root: root + "/rootfs")
        let first = layer { tar in
            tar.add(TarEntry(path: "etc/", kind: .directory, mode: 0o755))
            tar.add(TarEntry(path: "etc/keep", kind: .file), data: Array("keep".utf8))
            tar.add(TarEntry(path: "etc/gone", kind: .file), data: Array("gone".utf8))
            tar.add(TarEntry(path: "opaque/", kind: .directory, mode: 0o755))
            tar.add(TarEntry(path: "opaque/old", kind: .file), data: Array("old".utf8))
            tar.add(TarEntry(path: "opaque/sub/", kind: .directory, mode: 0o755))
            tar.add(TarEntry(path: "opaque/sub/older", kind: .file))
        }
        let digest = try apply(applier, first)
        #expect(digest == Digest.of(first))
        _ = try apply(applier, layer { tar in
            tar.add(TarEntry(path: "etc/.wh.gone", kind: .file))
            tar.add(TarEntry(path: "opaque/new", kind: .file), data: Array("new".utf8))
            tar.add(TarEntry(path: "opaque/.wh..wh..opq", kind: .file))
            tar.add(TarEntry(path: "data", kind: .file, mode: 0o640), data: Array("data".utf8))
            tar.add(TarEntry(path: "data-link", kind: .hardLink, linkTarget: "data"))
            tar.add(TarEntry(path: "sym", kind: .symlink, linkTarget: "/etc/keep"))
        })
        #expect(try tree() == ["f data", "f data-link", "d etc", "f etc/keep", "d opaque", "f opaque/new", "l sym"])
        var first_ = stat(), second = stat()
        stat(root + "/rootfs/data", &first_)
        stat(root + "/rootfs/data-link", &second)
        #expect(first_.st_ino == second.st_ino && first_.st_nlink == 2)
        #expect(first_.st_mode & 0o7777 == 0o640)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/rootfs/sym") == "/etc/keep")
        // A file replaced by a directory and back.
        _ = try apply(applier, layer { tar in
            tar.add(TarEntry(path: "etc/keep/", kind: .directory, mode: 0o700))
            tar.add(TarEntry(path: "opaque", kind: .file), data: [1])
        })
        #expect(try tree() == ["f data", "f data-link", "d etc", "d etc/keep", "f opaque", "l sym"])
    }

    @Test func refusesDotDotEntries() throws {
        let applier = try LayerApplier(root: root + "/rootfs")
        #expect(throws: ImageError.self) {
            try apply(applier, layer { $0.add(TarEntry(path: "../escaped", kind: .file), data: [1]) })
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/escaped"))
        #expect(throws: ImageError.self) {
            try apply(applier, layer { $0.add(TarEntry(path: "x", kind: .hardLink, linkTarget: "../../etc/passwd")) })
        }
    }

    @Test func neverWritesThroughASymlink() throws {
        let outside = root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let applier = try LayerApplier(root: root + "/rootfs")
        _ = try apply(applier, layer { $0.add(TarEntry(path: "link", kind: .symlink, linkTarget: outside)) })
        let error = #expect(throws: ImageError.self) {
            try apply(applier, layer { $0.add(TarEntry(path: "link/planted", kind: .file), data: [1]) })
        }
        #expect(error?.description.contains("symlink") == true, "\(String(describing: error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        // A whiteout through the link must not delete outside either.
        try Data([1]).write(to: URL(fileURLWithPath: outside + "/victim"))
        #expect(throws: ImageError.self) {
            try apply(applier, layer { $0.add(TarEntry(path: "link/.wh.victim", kind: .file)) })
        }
        #expect(FileManager.default.fileExists(atPath: outside + "/victim"))
        // Replacing the symlink itself is fine and leaves the outside alone.
        _ = try apply(applier, layer { $0.add(TarEntry(path: "link/", kind: .directory, mode: 0o755)) })
        #expect(try tree() == ["d link"])
        #expect(FileManager.default.fileExists(atPath: outside + "/victim"))
    }
}
