import ArgumentParser
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

    @Option(name: .long, help: ArgumentHelp("Restart policy: no, on-failure or always (default no).", valueName: "policy"))
    var restart: String?

    /// The fields these options set, as the API's JSON members.
    func members(autostart: Bool?) throws -> [(key: String, value: JSONValue)] {
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
        if let autostart { members.append(("autostart", .bool(autostart))) }
        if let restart {
            guard RestartPolicy(rawValue: restart) != nil else {
                throw UsageError("--restart must be one of no, on-failure, always; got '\(restart)'")
            }
            members.append(("restartPolicy", .string(restart)))
        }
        return members
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
          vireo create web --kernel vmlinux --initrd initramfs.cpio --cmdline "console=ttyS0" --cpus 2 --memory 1G --restart on-failure
        """)

    @Argument(help: "VM name: lower-case letters, digits and '-', at most 63, not starting with '-'.")
    var name: String

    @Option(name: .long, help: ArgumentHelp("Kernel image: bzImage, vmlinux ELF or PVH ELF.", valueName: "path"))
    var kernel: String

    @OptionGroup var definition: DefinitionOptions

    @Flag(name: .long, help: "Start the VM whenever the daemon starts.")
    var autostart = false

    @OptionGroup var options: ClientOptions

    func run() throws {
        let members: [(key: String, value: JSONValue)] = [("name", .string(name)), ("kernel", .string(absolute(kernel)))]
            + (try definition.members(autostart: autostart ? true : nil))
        _ = try DaemonCall.send(options, "POST", "/vms", json: .object(members))
        print(name)
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

    @Option(name: .long, help: ArgumentHelp("Start the VM when the daemon starts: true or false.", valueName: "bool"))
    var autostart: Bool?

    @Flag(name: .customLong("no-initrd"), help: "Remove the initial ramdisk.")
    var noInitrd = false

    @OptionGroup var options: ClientOptions

    func run() throws {
        var members = try definition.members(autostart: autostart)
        if let kernel { members.insert(("kernel", .string(absolute(kernel))), at: 0) }
        if noInitrd { members.append(("initrd", .null)) }
        guard !members.isEmpty else { throw UsageError("nothing to change: give at least one option (see 'vireo update --help')") }
        _ = try DaemonCall.send(options, "PATCH", "/vms/\(DaemonCall.path(name))", json: .object(members))
        print(name)
    }
}
