import Foundation

/// Where image VMs get guest/image-init.c's initramfs when none is named.
public enum ImageInitramfs {
    /// $VIREO_IMAGE_INITRAMFS, else the newest guest/build-image-initramfs.sh output in the build cache.
    public static func fromEnvironment() -> String? {
        let environment = ProcessInfo.processInfo.environment
        if let given = environment["VIREO_IMAGE_INITRAMFS"], !given.isEmpty { return given }
        return newestCached()
    }

    /// The newest guest/build-image-initramfs.sh output in the build cache, if any.
    public static func newestCached() -> String? {
        let environment = ProcessInfo.processInfo.environment
        let cache = environment["VIREO_CACHE"] ?? ((environment["HOME"] ?? "/root") + "/.cache/vireo")
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.hasPrefix("image-initramfs-") }
        let candidates = entries.map { "\(cache)/\($0)/initramfs.cpio" }.filter { FileManager.default.fileExists(atPath: $0) }
        return candidates.max { modified($0) < modified($1) }
    }

    private static func modified(_ path: String) -> Double {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate]) as? Date)?.timeIntervalSince1970 ?? 0
    }
}
