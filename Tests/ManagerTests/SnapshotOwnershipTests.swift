import Foundation
import Testing
@testable import Manager

/// Issue 12: a snapshot the VMM wrote in its own `vmm/` directory is moved to its target as root:
/// renamed on one filesystem, its plain files copied (holes kept) across filesystems; links the VMM's
/// user planted are never followed or copied, and nothing is left in `vmm/`.
@Suite struct SnapshotOwnershipTests {
    private func stage(in paths: VMPaths) throws -> String {
        try FileManager.default.createDirectory(atPath: paths.vmmDirectory, withIntermediateDirectories: true)
        let name = SnapshotOwnership.stagingName()
        let staging = paths.vmmDirectory + "/" + name
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
        try Data("state".utf8).write(to: URL(fileURLWithPath: staging + "/state.bin"))
        // 4 MiB with data only at the start and the end: the copy keeps the hole.
        let fd = open(staging + "/memory.bin", O_WRONLY | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        _ = "head".withCString { pwrite(fd, $0, 4, 0) }
        _ = "tail".withCString { pwrite(fd, $0, 4, off_t(4 << 20) - 4) }
        close(fd)
        try FileManager.default.createSymbolicLink(atPath: staging + "/planted", withDestinationPath: "/etc/passwd")
        return name
    }

    @Test(arguments: [false, true]) func aStagedSnapshotMovesOutWithoutItsLinks(acrossFilesystems: Bool) throws {
        let base = FileManager.default.temporaryDirectory.path + "/vireo-snapown-\(getpid())-\(acrossFilesystems)"
        let targetBase = acrossFilesystems ? "/dev/shm/vireo-snapown-\(getpid())" : base
        defer {
            try? FileManager.default.removeItem(atPath: base)
            try? FileManager.default.removeItem(atPath: targetBase)
        }
        if acrossFilesystems {
            var first = stat(), second = stat()
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            // Needs /dev/shm on another filesystem than the temporary directory (as on this host).
            guard stat(base, &first) == 0, stat("/dev/shm", &second) == 0, first.st_dev != second.st_dev else { return }
        }
        let paths = VMPaths(stateDirectory: base + "/state", name: "a")
        let name = try stage(in: paths)
        try FileManager.default.createDirectory(atPath: targetBase, withIntermediateDirectories: true)
        let target = targetBase + "/snap"
        try SnapshotOwnership.moveOut(name, in: paths, to: target)
        let files = try FileManager.default.contentsOfDirectory(atPath: target).sorted()
        #expect(files == (acrossFilesystems ? ["memory.bin", "state.bin"] : ["memory.bin", "planted", "state.bin"]), "\(files)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: target + "/state.bin")) == Data("state".utf8))
        let memory = try Data(contentsOf: URL(fileURLWithPath: target + "/memory.bin"))
        #expect(memory.count == 4 << 20 && memory.prefix(4) == Data("head".utf8) && memory.suffix(4) == Data("tail".utf8))
        if acrossFilesystems {
            var info = stat()
            #expect(stat(target + "/memory.bin", &info) == 0 && info.st_blocks * 512 < 1 << 20, "the hole was written out")
        } else {
            // Renamed as it was: the link is still a link, never resolved.
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: target + "/planted")) == "/etc/passwd")
        }
        #expect(!FileManager.default.fileExists(atPath: paths.vmmDirectory + "/" + name), "staging left in vmm/")
    }

    @Test func aMissingOrLinkedStagingIsRefusedAndDiscardRemovesOnlyItsEntries() throws {
        let base = FileManager.default.temporaryDirectory.path + "/vireo-snapown-bad-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let paths = VMPaths(stateDirectory: base + "/state", name: "a")
        try FileManager.default.createDirectory(atPath: paths.vmmDirectory, withIntermediateDirectories: true)
        let victim = base + "/victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim + "/file"))
        try FileManager.default.createSymbolicLink(atPath: paths.vmmDirectory + "/.snapshot-link", withDestinationPath: victim)
        #expect(throws: APIError.self) { try SnapshotOwnership.moveOut(".snapshot-link", in: paths, to: base + "/t1") }
        #expect(throws: APIError.self) { try SnapshotOwnership.moveOut(".snapshot-none", in: paths, to: base + "/t2") }
        SnapshotOwnership.discard(".snapshot-link", in: paths)
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim + "/file")) == Data("keep".utf8), "discard followed the link")
        let name = try stage(in: paths)
        SnapshotOwnership.discard(name, in: paths)
        #expect(!FileManager.default.fileExists(atPath: paths.vmmDirectory + "/" + name))
        #expect(FileManager.default.fileExists(atPath: "/etc/passwd"))
    }
}
