import ArgumentParser
import VMM

/// `vireo run`: boot one VM in the foreground with its serial console on this terminal.
package struct RunCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a kernel in a new VM, with its serial console on this terminal.",
        discussion: """
        The kernel may be a bzImage, an uncompressed vmlinux ELF, or any ELF with a PVH entry note. \
        Typing goes to the guest's serial port; Ctrl-C stops the VM. A guest reboot ends the VM \
        (exit 0), as in Firecracker.

        Example:
          vireo run --kernel vmlinux --initrd initramfs.cpio --cmdline "console=ttyS0 panic=-1" --cpus 2 --memory 1G
        """
    )

    @Option(name: .long, help: ArgumentHelp("Kernel image: bzImage, vmlinux ELF or PVH ELF.", valueName: "path"))
    var kernel: String?

    @Option(name: .long, help: ArgumentHelp("Restore a snapshot directory instead of booting a kernel.", valueName: "dir"))
    var restore: String?

    @Option(name: .long, help: ArgumentHelp("Initial ramdisk (cpio archive) loaded next to the kernel.", valueName: "path"))
    var initrd: String?

    @Option(name: .long, help: ArgumentHelp("Kernel command line.", valueName: "string"))
    var cmdline: String = "console=ttyS0"

    @Option(name: .long, help: ArgumentHelp("Number of vCPUs (1–\(VMConfig.maxCPUs)).", valueName: "n"))
    var cpus: Int = 1

    @Option(name: .long, help: ArgumentHelp("Guest RAM, e.g. 512M or 2G (a bare number is MiB).", valueName: "size"))
    var memory: String = "512M"

    @Option(name: .long, help: ArgumentHelp("Attach a raw disk image as virtio-blk (repeatable; the first is /dev/vda). Options: readonly, id=NAME (the serial the guest sees).", valueName: "path[,readonly][,id=NAME]"))
    var disk: [String] = []

    @Option(name: .long, help: ArgumentHelp("Add a virtio-net NIC (repeatable): user (passt, no root) or tap=NAME; option mac=XX:XX:XX:XX:XX:XX.", valueName: "user|tap=NAME[,mac=…]"))
    var net: [String] = []

    @Flag(name: .long, help: "Add a virtio-rng entropy device fed from the host's getrandom.")
    var rng = false

    @OptionGroup var devices: DeviceOptions

    @Option(name: .customLong("console-log"), help: ArgumentHelp("Also append the serial console to this file.", valueName: "file"))
    var consoleLog: String?

    @Option(name: .customLong("console-log-max"), help: ArgumentHelp("Rotate the console log to FILE.1 past this size, e.g. 1M.", valueName: "size"))
    var consoleLogMax: String?

    @Option(name: .customLong("api-socket"), help: ArgumentHelp("Serve the VM's control socket here (status, pause, resume, stop, kill, console).", valueName: "path"))
    var apiSocket: String?

    @Option(name: .customLong("snapshot-on"), help: ArgumentHelp("On this signal (SIGUSR2 or SIGQUIT), pause the VM, write a snapshot to a new --snapshot-dir/snapshot-N and resume.", valueName: "signal"))
    var snapshotOn: String?

    @Option(name: .customLong("snapshot-dir"), help: ArgumentHelp("Where --snapshot-on writes its snapshots.", valueName: "dir"))
    var snapshotDir: String?

    @Flag(name: .customLong("no-console"), help: "Do not print the serial console on stdout (use with --console-log).")
    var noConsole = false

    @Flag(name: .customLong("no-stdin"), help: "Do not feed stdin to the guest's serial port.")
    var noStdin = false

    @Option(name: .long, help: ArgumentHelp("Entry protocol: auto, linux (64-bit boot_params) or pvh.", valueName: "protocol"))
    var boot: String = "auto"

    @Option(name: .long, help: ArgumentHelp("The in-kernel i8254 PIT: on, off, or auto (only when the guest gets no TSC deadline timer; kernels without CONFIG_KVM_GUEST may need on).", valueName: "on|off|auto"))
    var pit: String = "auto"

    @Flag(name: .customLong("debug-exit"), help: "Add a QEMU-compatible isa-debug-exit port at 0x501 (write v: exit with (v<<1)|1).")
    var debugExit = false

    @Flag(name: .shortAndLong, help: "Print host kind, timings and exit counts on stderr.")
    var verbose = false

    @OptionGroup(title: "Isolation")
    var isolation: IsolationOptions

    @Option(name: .long, help: ArgumentHelp("Run the VM a spec file describes (JSON, as the daemon writes it) instead of these flags.", valueName: "file"))
    var spec: String?

    package func validate() throws {
        _ = try vmSpec()
    }

    package func run() throws {
        do {
            let spec = try vmSpec()  // refused here, the line is the same as vireo-vmm's
            LeanVMMHandOff.execIfPresent()
            try SpecRunner(spec: spec, verbose: verbose).run()
        } catch let error as UsageError {
            throw error.validation
        }
    }
}
