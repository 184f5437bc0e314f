import Foundation
import Testing
@testable import Manager

/// Reading and following a rotated console log.
@Suite struct ConsoleLogTests {
    @Test func lastLines() {
        let text = Array("a\nb\nc\n".utf8)
        #expect(ConsoleLog.lastLines(text, 2) == Array("b\nc\n".utf8))
        #expect(ConsoleLog.lastLines(text, 5) == text)
        #expect(ConsoleLog.lastLines(Array("a\nb".utf8), 1) == Array("b".utf8))
        #expect(ConsoleLog.lastLines(text, 0) == [])
    }

    @Test func followsAcrossARotation() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-log-\(getpid())").path
        try? FileManager.default.removeItem(atPath: directory)
        let paths = VMPaths(stateDirectory: directory, name: "vm")
        try FileManager.default.createDirectory(atPath: paths.vmmDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = ConsoleLog(paths: paths)

        try "one\n".write(toFile: paths.consoleLog, atomically: false, encoding: .utf8)
        var (bytes, position) = log.readAll()
        #expect(String(decoding: bytes, as: UTF8.self) == "one\n")

        let handle = try #require(FileHandle(forWritingAtPath: paths.consoleLog))
        handle.seekToEndOfFile()
        handle.write(Data("two\n".utf8))
        #expect(String(decoding: log.readNew(since: &position), as: UTF8.self) == "two\n")
        #expect(log.readNew(since: &position).isEmpty)

        // The VMM rotates: more output lands in the old file first, then the file is renamed.
        handle.write(Data("three\n".utf8))
        try handle.close()
        try FileManager.default.moveItem(atPath: paths.consoleLog, toPath: paths.rotatedConsoleLog)
        try "four\n".write(toFile: paths.consoleLog, atomically: false, encoding: .utf8)
        #expect(String(decoding: log.readNew(since: &position), as: UTF8.self) == "three\nfour\n")

        (bytes, _) = log.readAll()
        #expect(String(decoding: bytes, as: UTF8.self) == "one\ntwo\nthree\nfour\n")
        (bytes, _) = log.readAll(tailLines: 1)
        #expect(String(decoding: bytes, as: UTF8.self) == "four\n")
    }
}
