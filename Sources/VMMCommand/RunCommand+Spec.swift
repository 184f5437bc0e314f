import ArgumentParser
import VMM

extension RunCommand {
    /// The VM these flags (or `--spec FILE`) describe, checked by the shared `SpecValidator`: the flags'
    /// own syntax errors name the flag; limits name it too, in the words the API uses for its field.
    func vmSpec() throws -> VMSpec {
        let spec: VMSpec
        if let file = self.spec {
            guard kernel == nil && restore == nil && initrd == nil && disk.isEmpty && net.isEmpty else {
                throw ValidationError("--spec \(file) describes the whole VM: give it without --kernel, --restore, --initrd, --disk or --net")
            }
            spec = try SpecFile.read(file)
        } else {
            spec = try specFromFlags()
        }
        do {
            try SpecValidator.validate(spec)
        } catch {
            throw ValidationError(error.message(.commandLine))
        }
        return spec
    }

    private func specFromFlags() throws -> VMSpec {
        switch (kernel, restore) {
        case (nil, nil): throw ValidationError("give --kernel PATH (or --restore DIR, or --spec FILE)")
        case (_?, _?): throw ValidationError("--kernel and --restore cannot be used together")
        default: break
        }
        // Checked for --restore too, as before (the snapshot then decides how its guest is entered).
        guard let parsed = BootProtocol(rawValue: self.boot) else {
            throw ValidationError("--boot must be one of auto, linux, pvh; got '\(self.boot)'")
        }
        let boot: VMSpec.BootSource = kernel.map {
            .kernel(VMSpec.KernelBoot(kernel: $0, initrd: initrd, cmdline: cmdline, bootProtocol: parsed))
        } ?? .restore(directory: restore ?? "")
        guard let memoryBytes = ByteSize.parse(memory) else {
            throw ValidationError("--memory '\(memory)' is not a size (examples: 512M, 2G)")
        }
        var spec = VMSpec(machine: VMSpec.MachineShape(cpus: cpus, memoryBytes: Int64(clamping: memoryBytes)), boot: boot)
        spec.devices = try flagDevices(memoryBytes: memoryBytes)
        if let consoleLogMax {
            guard let bytes = ByteSize.parse(consoleLogMax) else {
                throw ValidationError("--console-log-max '\(consoleLogMax)' must be a size of at least 4K")
            }
            spec.console.logMaxBytes = bytes
        }
        spec.console.logPath = consoleLog
        spec.console.toStdout = !noConsole
        spec.console.fromStdin = !noStdin
        spec.control = VMSpec.Control(apiSocket: apiSocket, snapshotSignal: snapshotOn.map(RunCommand.signalName),
                                      snapshotDirectory: snapshotDir)
        (spec.resources, spec.isolation) = try isolation.specParts()
        return spec
    }

    private func flagDevices(memoryBytes: UInt64) throws -> VMSpec.Devices {
        var devices = VMSpec.Devices(rng: rng, debugExit: debugExit)
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
        } catch {
            throw ValidationError(error.description)
        }
        try self.devices.apply(to: &devices)
        return devices
    }
}
