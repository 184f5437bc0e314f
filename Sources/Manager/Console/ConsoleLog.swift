#if canImport(Glibc)
import Glibc
#endif

/// Reads a VM's console log as the VMM writes it: `console.log.1` (the rotated generation) then
/// `console.log`, and follows new output across rotations.
struct ConsoleLog: Sendable {
    let paths: VMPaths
    /// The most one read returns: the files may be links or huge files planted by the VM's user,
    /// so reads are bounded even though the VMM rotates its log far below this.
    static let readLimit = 16 << 20

    /// Where a follower has read up to: the file (by inode) and the offset in it.
    struct Position: Sendable, Equatable {
        var inode: UInt64
        var offset: Int64
    }

    /// Everything logged so far (at most the last `tailLines` lines), and where it ends.
    func readAll(tailLines: Int? = nil) -> (bytes: [UInt8], position: Position) {
        let current = identity(VMPaths.consoleLogFile)
        let currentSize = current?.size ?? 0
        let tailStart = max(0, currentSize - Int64(ConsoleLog.readLimit))
        let tail = readFile(VMPaths.consoleLogFile, from: tailStart) ?? []
        let rotatedRoom = ConsoleLog.readLimit - tail.count
        let rotatedSize = identity(VMPaths.rotatedConsoleLogFile)?.size ?? 0
        var bytes = rotatedRoom > 0 ? readFile(VMPaths.rotatedConsoleLogFile, from: max(0, rotatedSize - Int64(rotatedRoom))) ?? [] : []
        bytes += tail
        let position = Position(inode: current?.inode ?? 0, offset: tailStart + Int64(tail.count))
        guard let tailLines else { return (bytes, position) }
        return (ConsoleLog.lastLines(bytes, tailLines), position)
    }

    /// Output written since `position`, which moves past it. After a rotation the rest of the old
    /// file is read from `console.log.1`, then the new file from its start.
    func readNew(since position: inout Position) -> [UInt8] {
        guard let current = identity(VMPaths.consoleLogFile) else { return [] }
        var bytes: [UInt8] = []
        if current.inode != position.inode {
            if let rotated = identity(VMPaths.rotatedConsoleLogFile), rotated.inode == position.inode {
                bytes += readFile(VMPaths.rotatedConsoleLogFile, from: position.offset) ?? []
            }
            position = Position(inode: current.inode, offset: 0)
        } else if current.size < position.offset {
            position.offset = 0  // truncated in place
        }
        guard current.size > position.offset else { return bytes }
        let fresh = readFile(VMPaths.consoleLogFile, from: position.offset) ?? []
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

    /// Through DirectoryFiles: no links, no FIFOs, only regular files with one link.
    private func identity(_ name: String) -> (inode: UInt64, size: Int64)? {
        DirectoryFiles.identity(paths.vmmDirectory, name)
    }

    private func readFile(_ name: String, from offset: Int64) -> [UInt8]? {
        DirectoryFiles.read(paths.vmmDirectory, name, from: offset, limit: ConsoleLog.readLimit)
    }
}
