import Foundation

/// Where `POST /vms/{name}/snapshot` may write: an absolute path whose parent exists and that is
/// absent or an empty directory (never a link), so that no earlier snapshot or user file is ever
/// overwritten. The VMM checks again when it creates the directory (SnapshotDirectory).
/// The target must also lie under the image roots (a link leading out is refused).
enum SnapshotTarget {
    /// Returns the target with its links resolved: what the VMM is asked to create.
    static func check(_ given: String, roots: ImageRoots) throws(APIError) -> String {
        let directory: String
        guard given.hasPrefix("/"), given.utf8.count < 4096, !given.utf8.contains(0),
              !given.contains("\n") else {
            throw .invalidField("path", "field 'path' must be an absolute directory path, got \(JSONValue.string(given).serialized())")
        }
        // The parent is resolved; the target itself must not be a link (checked below).
        let name = (given as NSString).lastPathComponent
        guard name != "..", name != ".", name != "/" else {
            throw .invalidField("path", "field 'path' must name a new or empty directory, got \(JSONValue.string(given).serialized())")
        }
        do {
            let parent = try roots.resolve((given as NSString).deletingLastPathComponent)
            directory = parent == "/" ? "/" + name : parent + "/" + name
        } catch {
            throw .invalidField("path", "field 'path': '\(given)' \(error)")
        }
        let parent = (directory as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .invalidField("path", "field 'path': the parent directory '\(parent)' does not exist")
        }
        var info = stat()
        guard lstat(directory, &info) == 0 else { return directory }
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
        return directory
    }
}
