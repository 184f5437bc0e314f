#if canImport(Glibc)
import Glibc
#endif

/// Reads a VM's console log as the VMM writes it: `console.log.1` (the rotated generation) then
/// `console.log`, and follows new output across rotations.
struct ConsoleLog: Sendable {
    let paths: VMPaths

    /// Where a follower has read up to: the file (by inode) and the offset in it.
    struct Position: Sendable, Equatable {
        var inode: UInt64
        var offset: Int64
    }

    /// Everything logged so far (at most the last `tailLines` lines), and where it ends.
    func readAll(tailLines: Int? = nil) -> (bytes: [UInt8], position: Position) {
        var bytes = ConsoleLog.readFile(paths.rotatedConsoleLog, from: 0) ?? []
        let current = ConsoleLog.identity(paths.consoleLog)
        let tail = ConsoleLog.readFile(paths.consoleLog, from: 0) ?? []
        bytes += tail
        let position = Position(inode: current?.inode ?? 0, offset: Int64(tail.count))
        guard let tailLines else { return (bytes, position) }
        return (ConsoleLog.lastLines(bytes, tailLines), position)
    }

    /// Output written since `position`, which moves past it. After a rotation the rest of the old
    /// file is read from `console.log.1`, then the new file from its start.
    func readNew(since position: inout Position) -> [UInt8] {
        guard let current = ConsoleLog.identity(paths.consoleLog) else { return [] }
        var bytes: [UInt8] = []
        if current.inode != position.inode {
            if let rotated = ConsoleLog.identity(paths.rotatedConsoleLog), rotated.inode == position.inode {
                bytes += ConsoleLog.readFile(paths.rotatedConsoleLog, from: position.offset) ?? []
            }
            position = Position(inode: current.inode, offset: 0)
        } else if current.size < position.offset {
            position.offset = 0  // truncated in place
        }
        guard current.size > position.offset else { return bytes }
        let fresh = ConsoleLog.readFile(paths.consoleLog, from: position.offset) ?? []
        position.offset += Int64(fresh.count)
        return bytes + fresh
    }

    static func lastLines(_ bytes: [UInt8], _ count: Int) -> [UInt8] {
        guard count > 0 else { return [] }
        var newlines = 0
        var index = bytes.count
        // A final newline ends the last line; it does not start another.
        if index > 0, bytes[index - 1] == UInt8(ascii: "\n") { index -= 1 }
        while index > 0 {
            if bytes[index - 1] == UInt8(ascii: "\n") {
                newlines += 1
                if newlines == count { return Array(bytes[index...]) }
            }
            index -= 1
        }
        return bytes
    }

    private static func identity(_ path: String) -> (inode: UInt64, size: Int64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_ino), Int64(info.st_size))
    }

    private static func readFile(_ path: String, from offset: Int64) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var at = offset
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(at)) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            result += chunk[0..<count]
            at += Int64(count)
        }
        return result
    }
}
