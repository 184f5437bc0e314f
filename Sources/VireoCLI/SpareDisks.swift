import Foundation
import Images

/// `vireo run --image --spare-disks N`: N empty disks (0-byte files) with ids `vireo-slot-0`…,
/// after the image's root and config disks. The VMM's `attach-disk vireo-slot-K` (its control
/// socket) later gives a slot a disk; the guest finds it by that id (its virtio serial).
enum SpareDisks {
    static func id(_ slot: Int) -> String { "vireo-slot-\(slot)" }

    /// Creates the empty files in `directory`; their `--disk` options.
    static func make(count: Int, in directory: String) throws -> [String] {
        var options: [String] = []
        for slot in 0..<count {
            let path = "\(directory)/slot-\(slot).empty"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw ImageError("cannot create \(path): \(String(cString: strerror(errno)))") }
            close(fd)
            options += ["--disk", "\(path),id=\(id(slot))"]
        }
        return options
    }
}
