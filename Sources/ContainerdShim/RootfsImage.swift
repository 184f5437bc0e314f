import ContainerdShimAPI
import Crypto
import Foundation
import Images

/// Turns containerd's rootfs mounts (the snapshot, usually one overlay) into an image `vireo run
/// --image` can boot: mount at `<bundle>/rootfs`, archive the tree with GNU tar into one layer,
/// unmount, and write a one-layer OCI layout under the shim's state directory, named by the
/// layer's digest. Vireo's image cache then builds (once per distinct tree) the ext4 base the VM's
/// root is a copy-on-write overlay of, and the warm start restores a booted guest onto it.
/// Cost: a copy of the tree into the tar and one into the base, paid once per distinct rootfs
/// (a container's fresh snapshot has the image's bytes, so runs of one image share one base).
enum RootfsImage {
    /// A tree over 2 GiB is refused: the layer is held in memory once.
    static let maximumLayer = 2 << 30

    static func build(mounts: [Containerd_Types_Mount], bundle: String, stateDirectory: String) throws -> String {
        let rootfs = bundle + "/rootfs"
        try? FileManager.default.createDirectory(atPath: rootfs, withIntermediateDirectories: true)
        guard !mounts.isEmpty else { throw ShimError(ShimError.invalidArgument, "no rootfs mounts (the bundle's own rootfs is not supported)") }
        var mounted: [String] = []
        defer { for _ in mounted { unmount(rootfs) } }
        for mount in mounts {
            try RootfsImage.mount(mount, at: rootfs)
            mounted.append(rootfs)
        }
        let layer = try archive(rootfs)
        let hex = SHA256.hash(data: layer).map { String(format: "%02x", $0) }.joined()
        let layouts = stateDirectory + "/containerd"
        let layout = "\(layouts)/rootfs-\(hex)"
        if FileManager.default.fileExists(atPath: layout + "/index.json") { return layout }
        try FileManager.default.createDirectory(atPath: layouts, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let staging = "\(layouts)/.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var writer = LayoutWriter(configuration: .init())
        writer.gzip = false
        do {
            try writer.write(layers: [layer], to: staging)
            if rename(staging, layout) != 0 { try? FileManager.default.removeItem(atPath: staging) }  // another shim won: same bytes
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        return layout
    }

    /// Mounts one of containerd's mounts (type, source, options as for mount(8)).
    static func mount(_ mount: Containerd_Types_Mount, at target: String) throws {
        let known: [String: (set: UInt, clear: UInt)] = [
            "ro": (UInt(MS_RDONLY), 0), "rw": (0, UInt(MS_RDONLY)), "bind": (UInt(MS_BIND), 0), "rbind": (UInt(MS_BIND | MS_REC), 0),
            "nosuid": (UInt(MS_NOSUID), 0), "nodev": (UInt(MS_NODEV), 0), "noexec": (UInt(MS_NOEXEC), 0),
            "suid": (0, UInt(MS_NOSUID)), "dev": (0, UInt(MS_NODEV)), "exec": (0, UInt(MS_NOEXEC)),
        ]
        var flags: UInt = 0
        var data: [String] = []
        for option in mount.options {
            if let flag = known[option] { flags = (flags | flag.set) & ~flag.clear } else { data.append(option) }
        }
        let type = mount.type == "bind" ? "none" : mount.type
        let result = Glibc.mount(mount.source, target, type, flags, data.joined(separator: ","))
        guard result == 0 else {
            throw ShimError(ShimError.internal, "mount \(mount.type) \(mount.source) on \(target): \(String(cString: strerror(errno)))")
        }
    }

    static func unmount(_ target: String) {
        if umount2(target, Int32(MNT_DETACH)) != 0 && errno != EINVAL && errno != ENOENT {
            ShimLog.write("umount \(target): \(String(cString: strerror(errno)))")
        }
    }

    /// The tree as one uncompressed tar (entries relative to the root, sorted: equal trees give equal bytes).
    private static func archive(_ root: String) throws -> [UInt8] {
        let entries = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/tar")
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        process.arguments = ["--create", "--file=-", "--format=gnu", "--numeric-owner", "--sort=name", "--one-file-system", "--"] + entries
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let errorReader = Thread { _ = errors.fileHandleForReading.readDataToEndOfFile() }
        errorReader.start()
        var layer: [UInt8] = []
        while true {
            let chunk = output.fileHandleForReading.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            layer += chunk
            if layer.count > maximumLayer {
                process.terminate()
                process.waitUntilExit()
                throw ShimError(ShimError.invalidArgument, "the container's rootfs is over 2 GiB")
            }
        }
        process.waitUntilExit()
        // 1: some file changed while being read; the tree is a private snapshot, so only >1 is an error.
        guard process.terminationStatus <= 1 else { throw ShimError(ShimError.internal, "tar of the rootfs failed (status \(process.terminationStatus))") }
        return layer
    }
}
