import ArgumentParser
import VMMCommand
#if canImport(Glibc)
import Glibc
#endif

/// The `vireo` command: subcommands for running and managing VMs.
public struct VireoCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vireo",
        abstract: "Vireo: a KVM hypervisor. Run Linux guests and micro-VMs.",
        discussion: """
        Quick start:
          vireo run --kernel vmlinux --initrd initramfs.cpio --cmdline "console=ttyS0"
          vireo run --image OCI-DIR -- sh -c 'echo hi; exit 7'   (docs/images.md)

        Exit status of 'vireo run': 0 when the guest powers off or reboots, 1 when the VM failed \
        (unhandled instruction, triple fault, KVM error), 2 for bad input, 3 when the guest kernel \
        panicked, 128+N when stopped by signal N.
        """,
        subcommands: [
            RunCommand.self, VersionCommand.self, ServeCommand.self,
            CreateCommand.self, StartCommand.self, StopCommand.self, KillCommand.self, PauseCommand.self,
            ResumeCommand.self, RestartCommand.self, RemoveCommand.self, UpdateCommand.self, ListCommand.self,
            InspectCommand.self, ConsoleCommand.self, LogsCommand.self, EventsCommand.self, SnapshotCommand.self,
            RestoreCommand.self, PullCommand.self, ImagesCommand.self,
        ]
    )

    public init() {}

    /// Parses the process arguments and runs; bad input prints one line and exits 2.
    public static func runMain() -> Never {
        ImageRun.interceptIfImage(CommandLine.arguments)  // `run --image`: docs/images.md
        runCommandLine(VireoCommand.self)
    }
}
