import ArgumentParser
import VMMCommand
import Manager

/// `vireo snapshot NAME DIR`: snapshots a daemon VM (a running one is paused for it, then resumed).
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Snapshot a running or paused VM to a new directory.",
        discussion: "Start copies of it with 'vireo restore DIR --name NEW' (each clone shares the snapshot's memory, copy-on-write).")

    @Argument(help: "VM name.")
    var name: String

    @Argument(help: "Snapshot directory to create (absent or empty).")
    var directory: String

    @OptionGroup var options: ClientOptions

    func run() throws {
        let path = absolute(directory)
        let reply = try DaemonCall.send(options, "POST", "/vms/\(DaemonCall.path(name))/snapshot",
                                        json: .object([("path", .string(path))]), timeout: 900)
        let milliseconds = (try? JSONParser.parse(reply.body))?["snapshot"]?["ms"]?.intValue
        print(path + (milliseconds.map { " (\($0) ms)" } ?? ""))
    }
}

/// `vireo restore DIR [--name NEW]`: defines a VM that starts from a snapshot, and starts it.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Start a new VM from a snapshot directory (every later start restores it again).",
        discussion: """
        The snapshot fixes the kernel, command line, vCPUs, RAM, NICs and rng; give --disk once per snapshot
        disk to attach other images (two VMs must never write one image). Example, three clones:
          for i in 1 2 3; do cp base.ext4 clone$i.ext4; vireo restore snap --name clone$i --disk clone$i.ext4; done
        """)

    @Argument(help: "Snapshot directory (from 'vireo snapshot' or 'vireo run --api-socket').")
    var directory: String

    @Option(name: .long, help: ArgumentHelp("Name of the new VM (default: the directory's name).", valueName: "name"))
    var name: String?

    @OptionGroup var placement: PlacementOptions

    @Flag(name: .customLong("no-start"), help: "Only define the VM.")
    var noStart = false

    @OptionGroup var options: ClientOptions

    func run() throws {
        let path = absolute(directory)
        let vmName = name ?? RestoreCommand.defaultName(for: path)
        let members: [(key: String, value: JSONValue)] = [("name", .string(vmName)), ("restore", .string(path))]
            + (try placement.members(autostart: nil))
        _ = try DaemonCall.send(options, "POST", "/vms", json: .object(members))
        if !noStart { _ = try DaemonCall.send(options, "POST", "/vms/\(DaemonCall.path(vmName))/start") }
        print(vmName)
    }

    /// The directory's last component, lower-cased, with characters a VM name cannot have as '-'.
    static func defaultName(for path: String) -> String {
        let last = path.split(separator: "/").last.map(String.init) ?? "snapshot"
        var name = String(last.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "-" })
        while name.hasPrefix("-") { name.removeFirst() }
        return String(name.prefix(63)).isEmpty ? "snapshot" : String(name.prefix(63))
    }
}
