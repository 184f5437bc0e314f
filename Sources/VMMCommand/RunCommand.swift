import ArgumentParser
import KVM
import VMM
#if canImport(Glibc)
import Glibc
#endif

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

    @Flag(name: .customLong("debug-exit"), help: "Add a QEMU-compatible isa-debug-exit port at 0x501 (write v: exit with (v<<1)|1).")
    var debugExit = false

    @Flag(name: .shortAndLong, help: "Print host kind, timings and exit counts on stderr.")
    var verbose = false

    @OptionGroup(title: "Isolation")
    var isolation: IsolationOptions

    package func validate() throws {
        guard (kernel == nil) != (restore == nil) else {
            throw ValidationError(kernel == nil ? "give --kernel PATH (or --restore DIR)" : "--kernel and --restore cannot be used together")
        }
        guard (1...VMConfig.maxCPUs).contains(cpus) else {
            throw ValidationError("--cpus must be between 1 and \(VMConfig.maxCPUs), got \(cpus)")
        }
        guard let bytes = ByteSize.parse(memory) else {
            throw ValidationError("--memory '\(memory)' is not a size (examples: 512M, 2G)")
        }
        guard bytes >= VMConfig.minimumMemory else {
            throw ValidationError("--memory \(memory) is too small: a VM needs at least \(ByteSize.format(VMConfig.minimumMemory))")
        }
        guard bytes <= VMConfig.maximumMemory else {
            throw ValidationError("--memory \(memory) is too large: the limit is \(ByteSize.format(VMConfig.maximumMemory))")
        }
        if let consoleLogMax {
            guard let bytes = ByteSize.parse(consoleLogMax), bytes >= 4096 else {
                throw ValidationError("--console-log-max '\(consoleLogMax)' must be a size of at least 4K")
            }
        }
        switch (snapshotOn, snapshotDir) {
        case (nil, nil): break
        case (let signal?, _?):
            guard RunCommand.snapshotSignal(signal) != nil else {
                let names = Machine.snapshotSignals.map(\.name).joined(separator: " or ")
                throw ValidationError("--snapshot-on must be \(names), got '\(signal)'")
            }
        case (_?, nil): throw ValidationError("--snapshot-on needs --snapshot-dir DIR (where the snapshots go)")
        case (nil, _?): throw ValidationError("--snapshot-dir needs --snapshot-on SIGNAL")
        }
        guard BootProtocol(rawValue: boot) != nil else {
            throw ValidationError("--boot must be one of auto, linux, pvh; got '\(boot)'")
        }
    }

    package func run() throws {
        var config = VMConfig(kernelPath: kernel ?? "")
        config.initrdPath = initrd
        config.cmdline = cmdline
        config.cpus = cpus
        config.memoryBytes = ByteSize.parse(memory)!
        config.bootProtocol = BootProtocol(rawValue: boot)!
        config.consoleLogPath = consoleLog
        // Before any parsing: a long list must fail with a count, not run into a per-device limit.
        guard disk.count + net.count <= VMConfig.virtioSlots else {
            throw ValidationError("\(disk.count) --disk and \(net.count) --net: the VM has \(VMConfig.virtioSlots) virtio device slots")
        }
        do {
            config.disks = try disk.map { (text) throws(VMMError) in try DiskSpec.parse(text) }
            config.nets = try net.enumerated().map { (index, text) throws(VMMError) in try NetSpec.parse(text, index: index) }
        } catch {
            throw ValidationError(error.description)
        }
        config.rng = rng
        try devices.apply(to: &config)
        guard config.virtioDeviceCount <= VMConfig.virtioSlots else {
            throw ValidationError("\(config.virtioDeviceCount) virtio devices asked for: the VM has \(VMConfig.virtioSlots) slots")
        }
        config.consoleLogLimit = consoleLogMax.flatMap(ByteSize.parse)
        config.apiSocketPath = apiSocket
        config.snapshotSignal = snapshotOn.flatMap(RunCommand.snapshotSignal)
        config.snapshotDirectory = snapshotDir
        config.consoleToStdout = !noConsole
        config.consoleInputFD = noStdin ? nil : 0
        config.debugExitPort = debugExit ? 0x501 : nil

        let machine: Machine
        let isolationPlan: IsolationPlan
        do {
            isolationPlan = try IsolationPlan.prepare(isolation.settings(), config: &config)
            try isolationPlan.launch()  // a supervisor, when needed, stays in here until the VMM ends
            if let restore {
                machine = try Machine(restoring: restore, options: config)
            } else {
                machine = try Machine(config: config)
            }
            try isolationPlan.enter(helpers: machine.helperProcesses)
        } catch let error as VMMError {
            throw ValidationError(error.description)
        } catch {
            throw ValidationError("\(error)")
        }
        if verbose {
            printError("vireo: host: \(machine.hostKind); \(machine.config.cpus) vCPU(s), \(ByteSize.format(machine.config.memoryBytes)); cmdline: \(machine.commandLine)\n")
        }
        // Printed only once the VM is built, so that a refused run still fails with exactly one line.
        if geteuid() == 0 && isolation.uid == nil && !isolation.jail && isolation.jailDir == nil {
            printError("vireo: running the VMM as root without --uid or --jail; see docs/security.md\n")
        }
        for line in isolationPlan.warnings + (verbose ? isolationPlan.summary : []) { printError("vireo: \(line)\n") }
        let terminal = RawTerminal(fd: 0)
        if config.consoleInputFD != nil { terminal.enter() }
        let outcome = machine.run()
        terminal.restore()
        let reason = outcome.reason
        if !machine.stuckVCPUs.isEmpty {
            printError("vireo: vCPU(s) \(machine.stuckVCPUs.map(String.init).joined(separator: ", ")) did not leave KVM_RUN within \(Int(Machine.stopGraceSeconds)) s of the stop; exiting anyway\n")
        }
        if verbose {
            let s = outcome.statistics
            let milestones = Timeline.milestonesMs
            printError("vireo: first guest entry \(format3(milestones.firstEntry)) ms, first exit \(format3(milestones.firstExit)) ms after process start\n")
            printError("vireo: ran \(format3(outcome.runSeconds)) s; exits: io \(s.io), mmio \(s.mmio), emulated \(s.emulated), injected \(s.injected), kicks \(s.interrupted)\n")
            printError("vireo: accesses no device claimed: \(machine.unclaimedAccesses.ports) port, \(machine.unclaimedAccesses.mmio) MMIO\n")
            for snapshot in machine.vcpuSnapshots() { printError("vireo: \(snapshot)\n") }
            printError("vireo: memory: peak RSS \(outcome.peakRSS / 1024) KiB, guest RAM resident \(outcome.guestResident / 1024) KiB, VMM overhead \(outcome.overhead / 1024) KiB\n")
        }
        if reason.exitCode == 0 {
            if verbose { printError("vireo: \(reason)\n") }
        } else {
            printError("vireo: \(reason)\n")
        }
        throw VMExit(code: reason.exitCode)
    }
}

extension RunCommand {
    /// The signal number for `SIGUSR2`, `usr2`, `SIGQUIT`, …; nil for any other.
    static func snapshotSignal(_ text: String) -> Int32? {
        let upper = text.uppercased()
        let name = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        return Machine.snapshotSignals.first { $0.name == name }?.number
    }
}

/// Formats seconds with three decimals without Foundation.
func format3(_ value: Double) -> String {
    let milliseconds = Int((value * 1000).rounded())
    let fraction = String(milliseconds % 1000)
    return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}
