#if canImport(Glibc)
import Glibc
#endif

/// Where a VM's VMM writes a snapshot the API asked for. The VMM (unprivileged, and jailed by
/// default, where it sees only its own `vmm/` directory) creates a fresh staging directory in
/// `vmm/` itself (mkdir, files with O_EXCL|O_NOFOLLOW); the daemon then moves it, through directory
/// descriptors and without following links, to the checked target (rename; a copy of its plain
/// files across filesystems) and gives it back to root, so that a later VMM with the same uid
/// cannot alter it and no path inside the jail has to mean anything outside it.
enum SnapshotOwnership {
    /// A staging name no earlier snapshot used.
    static func stagingName() -> String {
        ".snapshot-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    /// Moves `vmm/<name>` (a directory, never a link) to `target` (absent or an empty directory)
    /// and hands everything to root.
    static func moveOut(_ name: String, in paths: VMPaths, to target: String) throws(APIError) {
        let vmmFD = open(paths.vmmDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard vmmFD >= 0 else { throw failure("open", paths.vmmDirectory) }
        defer { close(vmmFD) }
        var info = stat()
        guard fstatat(vmmFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw .internal("the VMM left no snapshot directory \(paths.vmmDirectory)/\(name)")
        }
        let owner = (uid: info.st_uid, gid: info.st_gid)
        if renameat(vmmFD, name, AT_FDCWD, target) != 0 {
            guard errno == EXDEV else { throw failure("move the snapshot to", target) }
            try copyPlainFiles(from: vmmFD, name, to: target)
            discard(name, in: paths)
        }
        takeBack(target, from: owner)
    }

    /// Removes a staging directory and the plain entries in it (unlinkat never follows a link).
    static func discard(_ name: String, in paths: VMPaths) {
        let vmmFD = open(paths.vmmDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard vmmFD >= 0 else { return }
        defer { close(vmmFD) }
        let fd = openat(vmmFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0, let stream = fdopendir(fd) {
            for entry in entries(stream) { unlinkat(fd, entry, 0) }
            closedir(stream)
        } else if fd >= 0 {
            close(fd)
        }
        unlinkat(vmmFD, name, AT_REMOVEDIR)
    }

    /// The snapshot's files copied into `target` (created 0700 if absent), holes kept as holes.
    private static func copyPlainFiles(from parentFD: Int32, _ name: String, to target: String) throws(APIError) {
        let sourceFD = openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard sourceFD >= 0 else { throw failure("open the staged snapshot for", target) }
        guard let stream = fdopendir(sourceFD) else {
            close(sourceFD)
            throw failure("list the staged snapshot for", target)
        }
        defer { closedir(stream) }
        if mkdir(target, 0o700) != 0 && errno != EEXIST { throw failure("create", target) }
        let targetFD = open(target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard targetFD >= 0 else { throw failure("open", target) }
        defer { close(targetFD) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for entry in entries(stream) {
            let input = openat(sourceFD, entry, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard input >= 0 else { continue }
            defer { close(input) }
            var info = stat()
            guard fstat(input, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else { continue }
            let output = openat(targetFD, entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard output >= 0 else { throw failure("create \(entry) in", target) }
            defer { close(output) }
            var offset = 0
            while true {
                let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count >= 0 else { throw failure("read \(entry) for", target) }
                if count == 0 { break }
                // Runs of non-zero 4 KiB pages are written; zero pages stay holes (guest RAM is
                // mostly untouched), and ftruncate below gives the file its size.
                var page = 0
                while page < count {
                    let isZero = { (start: Int) in buffer[start..<min(start + 4096, count)].allSatisfy { $0 == 0 } }
                    if isZero(page) {
                        page += 4096
                        continue
                    }
                    var end = page + 4096
                    while end < count && !isZero(end) { end += 4096 }
                    end = min(end, count)
                    var written = page
                    while written < end {
                        let done = buffer.withUnsafeBytes { pwrite(output, $0.baseAddress! + written, end - written, off_t(offset + written)) }
                        if done < 0 && errno == EINTR { continue }
                        guard done > 0 else { throw failure("write \(entry) in", target) }
                        written += done
                    }
                    page = end
                }
                offset += count
            }
            guard ftruncate(output, off_t(offset)) == 0 else { throw failure("size \(entry) in", target) }
        }
    }

    private static func entries(_ stream: OpaquePointer) -> [String] {
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Gives the directory and the plain files in it back to root. Links and files with other
    /// links are left alone (chown never follows them: AT_SYMLINK_NOFOLLOW and an nlink check).
    static func takeBack(_ directory: String, from owner: (uid: uid_t, gid: gid_t)?) {
        guard let owner, owner.uid != 0 else { return }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == owner.uid else { return }
        let listing = dup(fd)
        if listing >= 0, let stream = fdopendir(listing) {
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                var file = stat()
                guard fstatat(fd, name, &file, AT_SYMLINK_NOFOLLOW) == 0, file.st_mode & S_IFMT == S_IFREG,
                      file.st_nlink == 1, file.st_uid == owner.uid else { continue }
                _ = fchownat(fd, name, 0, 0, AT_SYMLINK_NOFOLLOW)
            }
        } else if listing >= 0 {
            close(listing)
        }
        _ = fchown(fd, 0, 0)
    }

    private static func failure(_ what: String, _ path: String) -> APIError {
        .internal("cannot \(what) the snapshot target \(path): \(String(cString: strerror(errno)))")
    }
}
