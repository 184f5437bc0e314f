import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// The version `vireo version` prints.
public let vireoVersion = "0.1.0"

/// The `vireo` command: subcommands for running and managing VMs.
public struct VireoCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vireo",
        abstract: "Vireo: a KVM hypervisor. Run Linux guests and micro-VMs.",
        discussion: """
        Quick start:
          vireo run --kernel vmlinux --initrd initramfs.cpio --cmdline "console=ttyS0"

        Exit status of 'vireo run': 0 when the guest powers off or reboots, 1 when the VM failed \
        (unhandled instruction, triple fault, KVM error), 2 for bad input, 3 when the guest kernel \
        panicked, 128+N when stopped by signal N.
        """,
        subcommands: [
            RunCommand.self, VersionCommand.self, ServeCommand.self,
            CreateCommand.self, StartCommand.self, StopCommand.self, KillCommand.self, PauseCommand.self,
            ResumeCommand.self, RestartCommand.self, RemoveCommand.self, UpdateCommand.self, ListCommand.self,
            InspectCommand.self, ConsoleCommand.self, LogsCommand.self, EventsCommand.self, SnapshotCommand.self,
            RestoreCommand.self,
        ]
    )

    public init() {}

    /// Parses the process arguments and runs; bad input prints one line and exits 2.
    public static func runMain() -> Never {
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(0)
        } catch let exitRequest as VMExit {
            Glibc.exit(exitRequest.code)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = self.message(for: error)
            printError("vireo: \(message.isEmpty ? "\(error)" : message)\n")
            Glibc.exit(2)
        }
    }
}

/// Carries a VM's exit status out of `run()` without ArgumentParser treating it as an error message.
struct VMExit: Error {
    let code: Int32
}

/// Bad user input: reported as one line, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes a message to stderr unbuffered (stdio's `stderr` global is not concurrency-safe in Swift 6).
func printError(_ message: String) {
    var text = message
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
