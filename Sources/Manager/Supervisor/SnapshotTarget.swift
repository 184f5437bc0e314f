import Foundation

/// Where `POST /vms/{name}/snapshot` may write: an absolute path whose parent exists and that is
/// absent or an empty directory (never a link), so that no earlier snapshot or user file is ever
/// overwritten. The VMM checks again when it creates the directory (SnapshotDirectory).
enum SnapshotTarget {
    static func check(_ directory: String) throws(APIError) {
        guard directory.hasPrefix("/"), directory.utf8.count < 4096, !directory.utf8.contains(0),
              !directory.contains("\n") else {
            throw .invalidField("path", "field 'path' must be an absolute directory path, got \(JSONValue.string(directory).serialized())")
        }
        let parent = (directory as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .invalidField("path", "field 'path': the parent directory '\(parent)' does not exist")
        }
        var info = stat()
        guard lstat(directory, &info) == 0 else { return }
        // The VMM opens it with O_NOFOLLOW too; refusing here gives the clearer message.
        guard info.st_mode & S_IFMT != S_IFLNK else {
            throw .invalidField("path", "field 'path': '\(directory)' is a symbolic link; a snapshot needs a new or empty directory")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw .invalidField("path", "field 'path': '\(directory)' exists and is not a directory")
        }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
        guard entries.isEmpty else {
            throw .invalidField("path", "field 'path': '\(directory)' is not empty; a snapshot needs a new or empty directory")
        }
    }
}
