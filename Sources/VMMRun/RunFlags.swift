import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `run`'s flags as given on the command line, before they become a `VMSpec`: what `vireo run`
/// (ArgumentParser) and `vireo-vmm run` (the hand-written `VMMArguments`) both fill in, so that the
/// two turn the same flags into the same VM, or into the same one-line error.
package struct RunFlags: Sendable {
    package var kernel: String?
    package var restore: String?
    package var initrd: String?
    package var cmdline = "console=ttyS0"
    package var cpus = 1
    package var memory = "512M"
    package var disk: [String] = []
    package var net: [String] = []
    package var rng = false
    package var vsock: String?
    package var balloon = false
    package var balloonTarget: String?
    package var virtioConsole: String?
    package var consoleLog: String?
    package var consoleLogMax: String?
    package var apiSocket: String?
    package var snapshotOn: String?
    package var snapshotDir: String?
    package var noConsole = false
    package var noStdin = false
    package var boot = "auto"
    package var pit = "auto"
    package var debugExit = false
    package var verbose = false
    package var seccomp: String?
    package var jail = false
    package var jailDir: String?
    package var uid: String?
    package var gid: String?
    package var resources = ResourceFlags()
    package var spec: String?

    package init() {}

    /// The VM these flags (or `--spec FILE`) describe, checked by the shared `SpecValidator`: the flags'
    /// own syntax errors name the flag; limits name it too, in the words the API uses for its field.
    package func vmSpec() throws(UsageError) -> VMSpec {
        let spec: VMSpec
        if let file = self.spec {
            guard kernel == nil && restore == nil && initrd == nil && disk.isEmpty && net.isEmpty else {
                throw UsageError("--spec \(file) describes the whole VM: give it without --kernel, --restore, --initrd, --disk or --net")
            }
            spec = try SpecFile.read(file)
        } else {
            spec = try specFromFlags()
        }
        do {
            try SpecValidator.validate(spec)
        } catch {
            throw UsageError(error.message(.commandLine))
        }
        return spec
    }

    private func specFromFlags() throws(UsageError) -> VMSpec {
        switch (kernel, restore) {
        case (nil, nil): throw UsageError("give --kernel PATH (or --restore DIR, or --spec FILE)")
        case (_?, _?): throw UsageError("--kernel and --restore cannot be used together")
        default: break
        }
        // Checked for --restore too, as before (the snapshot then decides how its guest is entered).
        guard let parsed = BootProtocol(rawValue: self.boot) else {
            throw UsageError("--boot must be one of auto, linux, pvh; got '\(self.boot)'")
        }
        let boot: VMSpec.BootSource = kernel.map {
            .kernel(VMSpec.KernelBoot(kernel: $0, initrd: initrd, cmdline: cmdline, bootProtocol: parsed))
        } ?? .restore(directory: restore ?? "")
        guard let memoryBytes = ByteSize.parse(memory) else {
            throw UsageError("--memory '\(memory)' is not a size (examples: 512M, 2G)")
        }
        var spec = VMSpec(machine: VMSpec.MachineShape(cpus: cpus, memoryBytes: Int64(clamping: memoryBytes)), boot: boot)
        spec.devices = try flagDevices()
        if let consoleLogMax {
            guard let bytes = ByteSize.parse(consoleLogMax) else {
                throw UsageError("--console-log-max '\(consoleLogMax)' must be a size of at least 4K")
            }
            spec.console.logMaxBytes = bytes
        }
        spec.console.logPath = consoleLog
        spec.console.toStdout = !noConsole
        spec.console.fromStdin = !noStdin
        spec.control = VMSpec.Control(apiSocket: apiSocket, snapshotSignal: snapshotOn.map(RunFlags.signalName),
                                      snapshotDirectory: snapshotDir)
        (spec.resources, spec.isolation) = try isolationParts()
        return spec
    }

    private func flagDevices() throws(UsageError) -> VMSpec.Devices {
        var devices = VMSpec.Devices(rng: rng, debugExit: debugExit)
        switch pit {
        case "auto": devices.pit = nil
        case "on": devices.pit = true
        case "off": devices.pit = false
        default: throw UsageError("--pit must be one of on, off, auto; got '\(pit)'")
        }
        do {
            devices.disks = try disk.map { (text) throws(VMMError) in
                let parsed = try DiskSpec.parse(text)
                // Only an id given on the command line goes into the spec; the default is the file name.
                let explicitID = text.split(separator: ",").dropFirst().contains { $0.hasPrefix("id=") }
                return VMSpec.Disk(path: parsed.path, readOnly: parsed.readOnly, id: explicitID ? parsed.id : nil, backing: parsed.backing)
            }
            devices.nets = try net.enumerated().map { (index, text) throws(VMMError) in
                let parsed = try NetSpec.parse(text, index: index)
                let mac = parsed.mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
                switch parsed.backend {
                case .user: return VMSpec.Net(mode: .user, mac: mac, ports: parsed.ports.isEmpty ? nil : parsed.ports, ipv4: parsed.ipv4)
                case let .tap(name): return VMSpec.Net(mode: .tap, tap: name, mac: mac)
                }
            }
            devices.vsock = try vsock.map { (text) throws(VMMError) in
                let parsed = try VsockSpec.parse(text)
                return VMSpec.Vsock(cid: parsed.cid, socket: parsed.socketPath)
            }
            devices.virtioConsole = try virtioConsole.map { (text) throws(VMMError) in
                let parsed = try ConsoleSpec.parse(text)
                return VMSpec.VirtioConsole(kind: parsed.kind == .socket ? .socket : .file, path: parsed.path)
            }
        } catch {
            throw UsageError(error.description)
        }
        if balloon || balloonTarget != nil {
            var spec = VMSpec.Balloon()
            if let balloonTarget {
                guard let bytes = ByteSize.parse(balloonTarget), bytes % 4096 == 0 else {
                    throw UsageError("--balloon-target '\(balloonTarget)' is not a size in 4 KiB pages (examples: 64M, 1G)")
                }
                spec.targetBytes = bytes
            }
            devices.balloon = spec
        }
        return devices
    }

    /// The resources and isolation the flags describe (formats here; limits in SpecValidator,
    /// host checks in `IsolationPlan.prepare`). An unset `--seccomp` takes `$VIREO_SECCOMP`.
    private func isolationParts() throws(UsageError) -> (VMSpec.Resources, VMSpec.Isolation) {
        let isolation = VMSpec.Isolation(seccomp: try RunFlags.seccompMode(seccomp), jail: jail || jailDir != nil,
                                         jailDirectory: jailDir, user: uid, group: gid)
        let cpuMax = try resources.parsedCPUMax().map {
            VMSpec.Resources.CPUMax(quotaMicros: $0.quotaMicroseconds, periodMicros: $0.periodMicroseconds)
        }
        let limits = VMSpec.Resources(cpuWeight: resources.cpuWeight, cpuMax: cpuMax,
                                      memoryMaxBytes: try resources.parsedMemoryMax().map { Int64(clamping: $0) },
                                      cpuAffinity: try resources.parsedAffinity())
        return (limits, isolation)
    }

    /// `--seccomp MODE`, else `$VIREO_SECCOMP`, else nil (the VMM's default); one-line error when unknown.
    static func seccompMode(_ flag: String?) throws(UsageError) -> SeccompMode? {
        let environmentMode = getenv("VIREO_SECCOMP").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        guard let mode = flag ?? environmentMode else { return nil }
        guard let parsed = SeccompMode(rawValue: mode) else {
            throw UsageError("--seccomp must be one of \(SeccompMode.allCases.map(\.rawValue).joined(separator: ", ")); got '\(mode)'")
        }
        return parsed
    }

    /// `SIGUSR2` for `SIGUSR2`, `usr2`, `sigusr2`: the name as the spec holds it.
    static func signalName(_ text: String) -> String {
        let upper = text.uppercased()
        return upper.hasPrefix("SIG") ? upper : "SIG" + upper
    }
}
