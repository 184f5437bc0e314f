import Foundation
@testable import Manager
import Testing

/// `vmm.log` past its limit keeps its tail in `vmm.log.1` and starts over, while the VMM's
/// O_APPEND descriptor writes on at the new end.
@Suite struct VMMLogTests {
    @Test func rotatesPastTheLimitAndTheWriterCarriesOn() throws {
        let state = "/tmp/vireo-vmmlog-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let paths = VMPaths(stateDirectory: state, name: "v")
        try FileManager.default.createDirectory(atPath: paths.directory, withIntermediateDirectories: true)
        let writer = open(paths.vmmLog, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o640)
        #expect(writer >= 0)
        defer { close(writer) }
        func append(_ text: String) { _ = text.withCString { write(writer, $0, strlen($0)) } }

        append(String(repeating: "a", count: 6000) + String(repeating: "b", count: 4096))
        VMMLog.rotateIfNeeded(paths, limit: 8192)
        #expect(try Data(contentsOf: URL(fileURLWithPath: paths.vmmLog)).count == 0)
        let rotated = try String(contentsOfFile: paths.rotatedVMMLog, encoding: .utf8)
        #expect(rotated.count == 8192 && rotated.hasSuffix(String(repeating: "b", count: 4096)))

        append("after\n")
        #expect(try String(contentsOfFile: paths.vmmLog, encoding: .utf8) == "after\n", "no hole before the new lines")
        VMMLog.rotateIfNeeded(paths, limit: 8192)
        #expect(try String(contentsOfFile: paths.vmmLog, encoding: .utf8) == "after\n", "under the limit: untouched")
    }
}
