import ArgumentParser
import VMMCommand
import Manager
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// The definition options `create` and `update` share.
struct DefinitionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Initial ramdisk (cpio archive).", valueName: "path"))
    var initrd: String?

    @Option(name: .long, help: ArgumentHelp("Kernel command line (default \"\(VMDefinition.defaultCmdline)\").", valueName: "string"))
    var cmdline: String?

    @Option(name: .long, help: ArgumentHelp("Number of vCPUs (default 1).", valueName: "n"))
    var cpus: Int?

    @Option(name: .long, help: ArgumentHelp("Guest RAM, e.g. 512M or 1G; a bare number is MiB (default 512M).", valueName: "size"))
    var memory: String?

    @Option(name: .long, help: ArgumentHelp("Add a virtio-net NIC (repeatable; replaces the list on update): user (passt, no root) or tap=NAME; option mac=XX:XX:XX:XX:XX:XX.", valueName: "user|tap=NAME[,mac=…]"))
    var net: [String] = []

    @Flag(name: .long, inversion: .prefixedNo, help: "Add (or on update remove) a virtio-rng entropy device.")
    var rng: Bool?

    @Option(name: .long, help: ArgumentHelp("KVM's in-kernel i8254 PIT: on, off, or auto (the VMM decides, as `vireo run --pit`).", valueName: "on|off|auto"))
    var pit: String?

    /// The fields these options set, as the API's JSON members.
    func members() throws -> [(key: String, value: JSONValue)] {
        var members: [(key: String, value: JSONValue)] = []
        if let initrd { members.append(("initrd", .string(absolute(initrd)))) }
        if let cmdline { members.append(("cmdline", .string(cmdline))) }
        if let cpus { members.append(("cpus", .int(Int64(cpus)))) }
        if let memory {
            guard let bytes = ByteSize.parse(memory) else {
                throw UsageError("--memory '\(memory)' is not a size (examples: 512M, 2G)")
            }
            guard bytes % (1 << 20) == 0 else { throw UsageError("--memory \(memory) is not a whole number of MiB") }
            members.append(("memoryMiB", .int(Int64(clamping: bytes >> 20))))
        }
        if !net.isEmpty { members.append(("nets", .array(try net.map(DefinitionOptions.netJSON)))) }
        if let rng { members.append(("rng", .bool(rng))) }
        if let pit {
            switch pit {
            case "on": members.append(("pit", .bool(true)))
            case "off": members.append(("pit", .bool(false)))
            case "auto": members.append(("pit", .null))
            default: throw UsageError("--pit must be one of on, off, auto; got '\(pit)'")
            }
        }
        return members
    }

    /// `user[,mac=M]` or `tap=NAME[,mac=M]` as the API's net object.
    static func netJSON(_ text: String) throws -> JSONValue {
        var parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let kind = parts.removeFirst()
        var members: [(key: String, value: JSONValue)]
        if kind == "user" {
            members = [("mode", .string("user"))]
        } else if kind.hasPrefix("tap=") {
            members = [("mode", .string("tap")), ("tap", .string(String(kind.dropFirst(4))))]
        } else {
            throw UsageError("--net '\(text)': expected user or tap=NAME, optionally followed by ,mac=XX:XX:XX:XX:XX:XX")
        }
        for option in parts {
            guard option.hasPrefix("mac=") else { throw UsageError("--net '\(text)': unknown option '\(option)' (expected mac=…)") }
            members.append(("mac", .string(String(option.dropFirst(4)))))
        }
        return .object(members)
    }
}

/// Options any daemon VM takes, booted or restored: disks, restart policy, cgroup limits, pinning
/// and confinement (the daemon passes them to the VM's `vireo run`).
struct PlacementOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Attach a raw disk image as virtio-blk (repeatable; the first is /dev/vda; replaces the list on update). backing=BASE makes PATH a copy-on-write overlay over BASE (created if missing).", valueName: "path[,readonly][,backing=BASE]"))
    var disk: [String] = []

    @Option(name: .long, help: ArgumentHelp("Restart policy: no, on-failure or always (default no).", valueName: "policy"))
    var restart: String?

    @OptionGroup var limits: ResourceOptions

    @Option(name: .long, help: ArgumentHelp("Syscall filter mode: on (default), kill, log or off.", valueName: "mode"))
    var seccomp: String?

    @Flag(name: .long, inversion: .prefixedNo, help: "Run the VMM in its own namespaces, pivot_rooted into a per-VM directory, without capabilities (default: on where the host allows it).")
    var jail: Bool?

    @Option(name: .long, help: ArgumentHelp("Run the VMM as this host user once the VM is built.", valueName: "user"))
    var uid: String?

    @Option(name: .long, help: ArgumentHelp("Group for --uid.", valueName: "group"))
    var gid: String?

    /// The fields these options set, as the API's JSON members (`resources` and `isolation` hold
    /// only the settings given: an update changes just those).
    func members(autostart: Bool?) throws -> [(key: String, value: JSONValue)] {
        var members: [(key: String, value: JSONValue)] = []
        if !disk.isEmpty { members.append(("disks", .array(try disk.map(PlacementOptions.diskJSON)))) }
        if let autostart { members.append(("autostart", .bool(autostart))) }
        if let restart {
            guard RestartPolicy(rawValue: restart) != nil else {
                throw UsageError("--restart must be one of no, on-failure, always; got '\(restart)'")
            }
            members.append(("restartPolicy", .string(restart)))
        }
        var resources: [(key: String, value: JSONValue)] = []
        if let cpuWeight = limits.cpuWeight { resources.append(("cpuWeight", .int(Int64(cpuWeight)))) }
        if let parsed = try limits.parsedCPUMax() {
            resources.append(("cpuMax", .object([("quotaMicros", .int(Int64(parsed.quotaMicroseconds))),
                                                 ("periodMicros", .int(Int64(parsed.periodMicroseconds)))])))
        }
        if let bytes = try limits.parsedMemoryMax() {
            guard bytes % (1 << 20) == 0 else { throw UsageError("--memory-max \(limits.memoryMax ?? "") is not a whole number of MiB") }
            resources.append(("memoryMaxMiB", .int(Int64(clamping: bytes >> 20))))
        }
        if let cpus = try limits.parsedAffinity() {
            resources.append(("cpuAffinity", .array(cpus.map { .int(Int64($0)) })))
        }
        if !resources.isEmpty { members.append(("resources", .object(resources))) }
        var isolation: [(key: String, value: JSONValue)] = []
        if let seccomp { isolation.append(("seccomp", .string(seccomp))) }
        if let jail { isolation.append(("jail", .bool(jail))) }
        if let uid { isolation.append(("user", .string(uid))) }
        if let gid { isolation.append(("group", .string(gid))) }
        if !isolation.isEmpty { members.append(("isolation", .object(isolation))) }
        return members
    }

    /// `PATH[,readonly][,backing=BASE]` as the API's disk object (paths made absolute).
    static func diskJSON(_ text: String) throws -> JSONValue {
        var parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let path = parts.removeFirst()
        guard !path.isEmpty else { throw UsageError("--disk needs a path: --disk PATH[,readonly][,backing=BASE]") }
        var members: [(key: String, value: JSONValue)] = [("path", .string(absolute(path)))]
        for option in parts {
            if option == "readonly" || option == "ro" {
                members.append(("readOnly", .bool(true)))
            } else if option.hasPrefix("backing="), option.count > 8 {
                members.append(("backing", .string(absolute(String(option.dropFirst(8))))))
            } else {
                throw UsageError("--disk \(text): unknown option '\(option)' (expected readonly or backing=BASE)")
            }
        }
        return .object(members)
    }
}

/// A path as the daemon needs it: absolute (the daemon's working directory is not ours).
func absolute(_ path: String) -> String {
    guard !path.hasPrefix("/") else { return path }
    var buffer = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let directory = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return directory + "/" + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
}

/// `vireo create NAME --kernel …`: defines a VM in the daemon (it does not start it).
struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Define a VM (start it with 'vireo start NAME').",
        discussion: """
        Example:
          vireo create web --kernel vmlinux --initrd initramfs.cpio --cmdline "console=ttyS0 root=/dev/vda ip=dhcp" \\
            --cpus 2 --memory 1G --disk root.ext4 --net user --rng --restart on-failure --cpu-weight 200 --cpu-affinity 0,1
          vireo create job --image ./busybox-oci -- sh -c 'echo hi; exit 7'   (an OCI image; see docs/images.md)
        """)

    @Argument(help: "VM name: lower-case letters, digits and '-', at most 63, not starting with '-'.")
    var name: String

    @Option(name: .long, help: ArgumentHelp("Kernel image: bzImage, vmlinux ELF or PVH ELF (with --image: default the daemon's VIREO_KERNEL).", valueName: "path"))
    var kernel: String?

    @OptionGroup var image: ImageOptions

    @OptionGroup var definition: DefinitionOptions

    @OptionGroup var placement: PlacementOptions

    @Flag(name: .long, help: "Start the VM whenever the daemon starts.")
    var autostart = false

    @OptionGroup var options: ClientOptions

    // After `--` only: options may then come anywhere, before or after the name and the image.
    @Argument(parsing: .postTerminator, help: ArgumentHelp("With --image, after '--': the program and its arguments (replace the image's CMD).", valueName: "command"))
    var command: [String] = []

    func run() throws {
        var members: [(key: String, value: JSONValue)] = [("name", .string(name))]
        if let kernel { members.append(("kernel", .string(absolute(kernel)))) }
        let program = command
        if let section = try image.json(command: program) {
            members.append(("image", section))
        } else if kernel == nil {
            throw UsageError("give --kernel PATH (a kernel VM) or --image REF (an OCI image)")
        } else if !program.isEmpty {
            throw UsageError("unexpected argument '\(program[0])': a command follows --image REF only")
        }
        members += (try definition.members()) + (try placement.members(autostart: autostart ? true : nil))
        _ = try DaemonCall.send(options, "POST", "/vms", json: .object(members))
        print(name)
    }
}

/// `vireo create --image`: the OCI image and the overrides `vireo run --image` also takes.
struct ImageOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Run this OCI image (layout directory, oci-archive/docker-archive tarball, or registry reference); the daemon imports it into its cache.", valueName: "ref"))
    var image: String?

    @Option(name: .long, help: ArgumentHelp("With --image: replace the image's ENTRYPOINT (\"\" clears it).", valueName: "program"))
    var entrypoint: String?

    @Option(name: [.short, .long], help: ArgumentHelp("With --image: set an environment variable (repeatable).", valueName: "KEY=VALUE"))
    var env: [String] = []

    @Option(name: [.short, .long], help: ArgumentHelp("With --image: the program's working directory.", valueName: "dir"))
    var workdir: String?

    @Option(name: [.short, .long], help: ArgumentHelp("With --image: the user (and group) the program runs as.", valueName: "user[:group]"))
    var user: String?

    /// The API's `image` object, or nil without --image (refusing image options alone).
    func json(command: [String]) throws -> JSONValue? {
        guard let image else {
            if entrypoint != nil || !env.isEmpty || workdir != nil || user != nil {
                throw UsageError("--entrypoint, --env, --workdir and --user need --image REF")
            }
            return nil
        }
        // A path the daemon can find: made absolute when it names a file or directory here.
        var isPath = image.hasPrefix("/") || image.hasPrefix("./") || image.hasPrefix("../")
        if !isPath { var info = stat(); isPath = stat(image, &info) == 0 }
        var members: [(key: String, value: JSONValue)] = [("reference", .string(isPath ? absolute(image) : image))]
        if !command.isEmpty { members.append(("command", .array(command.map(JSONValue.string)))) }
        if let entrypoint { members.append(("entrypoint", .string(entrypoint))) }
        if !env.isEmpty { members.append(("env", .array(env.map(JSONValue.string)))) }
        if let workdir { members.append(("workdir", .string(workdir))) }
        if let user { members.append(("user", .string(user))) }
        return .object(members)
    }
}

/// `vireo update NAME …`: changes a stopped VM's definition.
struct UpdateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change the definition of a VM that is not running.")

    @Argument(help: "VM name.")
    var name: String

    @Option(name: .long, help: ArgumentHelp("Kernel image.", valueName: "path"))
    var kernel: String?

    @OptionGroup var definition: DefinitionOptions

    @OptionGroup var placement: PlacementOptions

    @Option(name: .long, help: ArgumentHelp("Start the VM when the daemon starts: true or false.", valueName: "bool"))
    var autostart: Bool?

    @Flag(name: .customLong("no-disks"), help: "Detach all disks.")
    var noDisks = false

    @Flag(name: .customLong("no-nets"), help: "Remove all NICs.")
    var noNets = false

    @Flag(name: .customLong("no-initrd"), help: "Remove the initial ramdisk.")
    var noInitrd = false

    @OptionGroup var options: ClientOptions

    func run() throws {
        var members = try definition.members() + (try placement.members(autostart: autostart))
        if let kernel { members.insert(("kernel", .string(absolute(kernel))), at: 0) }
        if noInitrd { members.append(("initrd", .null)) }
        if noDisks { members.append(("disks", .array([]))) }
        if noNets { members.append(("nets", .array([]))) }
        guard !members.isEmpty else { throw UsageError("nothing to change: give at least one option (see 'vireo update --help')") }
        _ = try DaemonCall.send(options, "PATCH", "/vms/\(DaemonCall.path(name))", json: .object(members))
        print(name)
    }
}
