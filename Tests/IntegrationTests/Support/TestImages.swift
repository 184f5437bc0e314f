import Foundation
import Images

/// OCI images the image tests build themselves from Debian's busybox-static (no registry needed).
enum TestImages {
    static let applets = ["sh", "echo", "ls", "cat", "id", "env", "pwd", "find", "stat", "readlink", "sort", "sleep",
                          "hostname", "kill", "wc", "nc", "tty", "stty", "tr"]

    /// The image init's initramfs (guest/build-image-initramfs.sh, cached; built on first use).
    static func initramfs() throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("guest/build-image-initramfs.sh").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let path = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) else {
            throw ImageError("guest/build-image-initramfs.sh failed")
        }
        return path
    }

    static func directory(_ path: String, mode: UInt32 = 0o755, uid: UInt32 = 0, gid: UInt32 = 0) -> TarEntry {
        TarEntry(path: path, kind: .directory, mode: mode, uid: uid, gid: gid)
    }

    static func file(_ path: String, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0) -> TarEntry {
        TarEntry(path: path, kind: .file, mode: mode, uid: uid, gid: gid)
    }

    /// The bottom layer: busybox with applet links, /etc/passwd with root and app (1000:1000), /tmp.
    static func busyboxLayer(_ tar: inout TarWriter) throws {
        let busybox = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox")))
        tar.add(directory("bin/"))
        tar.add(file("bin/busybox", mode: 0o755), data: busybox)
        for applet in applets { tar.add(TarEntry(path: "bin/\(applet)", kind: .symlink, mode: 0o777, linkTarget: "busybox")) }
        tar.add(directory("etc/"))
        tar.add(file("etc/passwd"), data: Array("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n".utf8))
        tar.add(file("etc/group"), data: Array("root:x:0:\napp:x:1000:\nstaff:x:50:app\n".utf8))
        tar.add(directory("tmp/", mode: 0o1777))
        tar.add(directory("root/", mode: 0o700))
    }

    static func layer(_ build: (inout TarWriter) throws -> Void) rethrows -> [UInt8] {
        var tar = TarWriter()
        try build(&tar)
        tar.finish()
        return tar.bytes
    }

    /// One layer; CMD prints a default line.
    static func oneLayer(at path: String) throws {
        var writer = LayoutWriter(configuration: .init(Env: ["PATH=/bin", "GREETING=hello"], Cmd: ["/bin/sh", "-c", "echo default-cmd"]))
        writer.gzip = true
        try writer.write(layers: [try layer(busyboxLayer)], to: path)
    }

    /// The script the three-layer image runs by default: where it is, who it is, and the tree; then it
    /// waits for SIGTERM (which the test sends to `vireo`) and exits 42 on it.
    static let listing = """
        echo "cwd=$(pwd) uid=$(id -u) gid=$(id -g) mode=$MODE"; \
        stat -c 'tree %n|%F|%h|%u:%g|%a|%s' $(find /data /opq /home/app | sort); \
        echo "link=$(readlink /data/sym)" inodes= $(stat -c %i /data/keep.txt /data/hard); \
        trap 'echo got-TERM; exit 42' TERM; echo ready; sleep 600 & wait
        """

    /// Three layers: a whiteout, an opaque directory, a hard link, a symlink, owners and modes.
    /// Entrypoint+Cmd list the tree; Env, WorkingDir and User come from the config.
    static func threeLayers(at path: String) throws {
        let first = try layer { tar in
            try busyboxLayer(&tar)
            tar.add(directory("data/"))
            tar.add(file("data/keep.txt"), data: Array("keep\n".utf8))
            tar.add(file("data/gone.txt"), data: Array("gone\n".utf8))
            tar.add(directory("opq/"))
            tar.add(file("opq/old1"), data: Array("old\n".utf8))
            tar.add(directory("opq/sub/"))
            tar.add(file("opq/sub/old2"), data: Array("old\n".utf8))
        }
        let second = layer { tar in
            tar.add(file("data/.wh.gone.txt"))
            tar.add(TarEntry(path: "data/hard", kind: .hardLink, linkTarget: "data/keep.txt"))
            tar.add(TarEntry(path: "data/sym", kind: .symlink, mode: 0o777, linkTarget: "keep.txt"))
            tar.add(directory("opq/"))
            tar.add(file("opq/new", mode: 0o600, uid: 1000, gid: 1000), data: Array("new!\n".utf8))
            tar.add(file("opq/.wh..wh..opq"))
            tar.add(directory("home/"))
            tar.add(directory("home/app/", mode: 0o750, uid: 1000, gid: 1000))
        }
        let third = layer { tar in
            tar.add(file("data/added.txt", mode: 0o640, uid: 0, gid: 50), data: Array("added in layer 3\n".utf8))
        }
        var writer = LayoutWriter(configuration: .init(User: "app", Env: ["PATH=/bin", "MODE=three"],
                                                       Entrypoint: ["/bin/sh", "-c"], Cmd: [listing], WorkingDir: "/data"))
        writer.gzip = true
        try writer.write(layers: [first, second, third], to: path)
    }

    /// A layer whose entry climbs out of the root with `..`.
    static func escaping(at path: String, target: String) throws {
        let hostile = layer { tar in
            tar.add(file("../../../../../../../../..\(target)"), data: Array("escaped\n".utf8))
        }
        try LayoutWriter(configuration: .init(Cmd: ["/bin/sh"])).write(layers: [try layer(busyboxLayer), hostile], to: path)
    }
}
