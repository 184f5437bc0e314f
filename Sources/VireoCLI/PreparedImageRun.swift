import Foundation
import Images
import VMMCommand

/// Everything one image VM needs on the host: the cached image and base, a lock on the base, and
/// this run's directory with the root overlay and the config disk (removed after the run).
struct PreparedImageRun {
    let runDirectory: String
    let configDisk: String
    let runArguments: [String]
    /// The vsock socket signals for the program go through (nil when the user attached their own vsock).
    let signalSocket: String?
    let baseLock: BaseLock
    /// Empty hot-attach slots after vda and vdb (`--spare-disks`).
    let spareDisks: Int
    let store: ImageStore
    let kernel: String
    let initrd: String
    /// The image VM's kernel command line (a warm-start snapshot is keyed by it).
    let cmdline: String
    /// `--disk` for the root overlay and the config disk, in that order (vda, vdb).
    let diskArguments: [String]
    /// The program's terminal size on the config disk (-t).
    var terminalSize: RunSpec.TerminalSize? = nil
    /// The image's ext4 base, under the root overlay.
    let base: String
    /// The root overlay (`root.overlay`, with its `.map`).
    let overlay: String
    /// The program (argv[0]) and the PATH it is looked up in: what an image snapshot pre-reads.
    let program: String?
    let searchPath: String

    static func prepare(_ arguments: ImageRunArguments) throws -> PreparedImageRun {
        let environment = ProcessInfo.processInfo.environment
        guard let kernel = arguments.kernel ?? environment["VIREO_KERNEL"] else {
            throw ImageRunUsage("no guest kernel: give --kernel PATH or set VIREO_KERNEL (scripts/guest builds the project's kernel and prints its path)")
        }
        guard let initrd = arguments.initrd ?? ImageInitramfs.fromEnvironment() else {
            throw ImageRunUsage("no image init: give --initrd PATH or set VIREO_IMAGE_INITRAMFS (guest/build-image-initramfs.sh builds it and prints its path)")
        }
        let store = try ImageCache.open(arguments.stateDirectory)
        var importer = ImageImporter(store: store, progress: ImageCache.progress)
        importer.insecureRegistry = arguments.insecureRegistry
        let record = try importer.resolve(arguments.reference)
        let base = try BaseBuilder(store: store, progress: ImageCache.progress).base(for: record)
        let lock = try BaseLock(base: base.path)
        let config = try JSONDecoder().decode(ImageConfiguration.self, from: try store.readBlob(record.configDigest))
        var overrides = RunSpec.Overrides()
        overrides.command = arguments.command
        overrides.entrypoint = arguments.entrypoint
        overrides.environment = arguments.environment
        overrides.workingDirectory = arguments.workingDirectory
        overrides.user = arguments.user
        overrides.hostname = arguments.hostname
        var spec = try RunSpec.make(config: config, overrides: overrides, hostEnvironment: environment,
                                    defaultHostname: "vireo-" + String(UInt32.random(in: 0...UInt32.max), radix: 16))
        spec.terminal = isatty(1) == 1 || arguments.terminal
        if arguments.terminal { spec.terminalSize = HostTerminal.size() ?? RunSpec.TerminalSize(rows: 24, columns: 80) }
        if arguments.terminal && !spec.environment.contains(where: { $0.hasPrefix("TERM=") }) { spec.environment.append("TERM=xterm") }
        spec.resourceLimits = arguments.resourceLimits
        var passthrough = arguments.passthrough
        let network = try ImageNetwork.plan(published: arguments.published, passthrough: &passthrough)
        spec.network = network.guest

        let runDirectory = "\(store.root)/runs/\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(runDirectory, 0o700) == 0 else {
            throw ImageError("cannot create \(runDirectory): \(String(cString: strerror(errno)))")
        }
        let configDisk = runDirectory + "/config.disk"
        let overlay = runDirectory + "/root.overlay"
        do { try GuestConfigDisk.write(spec, to: configDisk) } catch {
            try? FileManager.default.removeItem(atPath: runDirectory)
            throw error
        }
        // Spare slots change the VM's devices: the count is on the command line, so a warm-start
        // snapshot (keyed by it) is made and restored with the same slots.
        let cmdline = ImageRun.cmdline + (arguments.spareDisks > 0 ? " vireo_slots=\(arguments.spareDisks)" : "")
            + (arguments.extraCmdline.map { " " + $0 } ?? "")
        // The image's disks come first, so the guest sees them as vda and vdb whatever else is attached.
        var diskArguments = ["--disk", "\(overlay),backing=\(base.path),id=vireo-root", "--disk", "\(configDisk),id=vireo-config"]
        do {
            diskArguments += try SpareDisks.make(count: arguments.spareDisks, in: runDirectory)
        } catch {
            try? FileManager.default.removeItem(atPath: runDirectory)
            throw error
        }
        var runArguments = ["--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline] + diskArguments
        let socket = runDirectory + "/signal.sock"
        let signalSocket = passthrough.contains { $0 == "--vsock" || $0.hasPrefix("--vsock=") } || socket.utf8.count > 100 ? nil : socket
        if let signalSocket { runArguments += ["--vsock", "cid=3,socket=\(signalSocket)"] }
        let path = spec.environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
        return PreparedImageRun(runDirectory: runDirectory, configDisk: configDisk, runArguments: runArguments + network.netOptions + passthrough,
                                signalSocket: signalSocket, baseLock: lock, spareDisks: arguments.spareDisks, store: store, kernel: kernel, initrd: initrd,
                                cmdline: cmdline, diskArguments: diskArguments, terminalSize: spec.terminalSize, base: base.path, overlay: overlay,
                                program: spec.arguments.first,
                                searchPath: path.flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    }

    /// `vireo run` arguments that restore `snapshot` with this run's disks and vsock socket (and, for
    /// a run that makes an image snapshot, a control socket).
    func restoreArguments(snapshot: String, options: [String], controlSocket: String? = nil) -> [String] {
        ["--restore", snapshot] + diskArguments + ["--vsock", "cid=3,socket=\(signalSocket ?? "")"]
            + (controlSocket.map { ["--api-socket", $0] } ?? []) + options
    }

    /// The VMM's control socket for a run that makes an image snapshot (nil when the path is too long for a socket).
    var controlSocket: String? {
        let path = runDirectory + "/api.sock"
        return path.utf8.count > 100 ? nil : path
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: runDirectory)
    }
}
