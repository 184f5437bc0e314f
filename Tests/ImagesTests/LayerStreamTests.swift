import Foundation
import Testing
@testable import Images

/// Layers compressed with gzip or zstd (chosen from their bytes) unpack to the same tree and the
/// same diff_id; a corrupt stream is refused.
@Suite struct LayerStreamTests {
    private func compress(_ tool: String, _ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path + ".tar"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(Tool.find(tool), "\(tool) is not installed"))
        process.arguments = tool == "zstd" ? ["-q", "-f", "-o", path, path + ".tar"] : ["-c", "-n", path + ".tar"]
        if tool == "gzip" {
            FileManager.default.createFile(atPath: path, contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: path)
        }
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    @Test(arguments: ["gzip", "zstd"]) func compressedLayerUnpacks(tool: String) throws {
        let dir = NSTemporaryDirectory() + "vireo-stream-\(tool)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var tar = TarWriter()
        tar.add(TarEntry(path: "hello", kind: .file, mode: 0o644), data: Array("hello \(tool)\n".utf8))
        tar.finish()
        try compress(tool, tar.bytes, to: dir + "/layer")
        let stream = try LayerStream(path: dir + "/layer")
        #expect(stream.compression == tool)
        let digest = try LayerApplier(root: dir + "/root").apply(layer: stream.fd, name: tool)
        try stream.finish()
        #expect(digest == Digest.of(tar.bytes))
        #expect(try String(contentsOfFile: dir + "/root/hello", encoding: .utf8) == "hello \(tool)\n")

        // The same stream cut short: the tar reader or the decompressor refuses it.
        let whole = try Data(contentsOf: URL(fileURLWithPath: dir + "/layer"))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: dir + "/cut"))
        try FileManager.default.createDirectory(atPath: dir + "/root2", withIntermediateDirectories: true)
        let cut = try LayerStream(path: dir + "/cut")
        #expect(throws: ImageError.self) {
            defer { cut.cancel() }
            _ = try LayerApplier(root: dir + "/root2").apply(layer: cut.fd, name: "cut")
            try cut.finish()
        }
    }
}
