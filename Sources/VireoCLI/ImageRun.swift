import Foundation
import Images
import VMMCommand

/// `vireo run --image REF [--] [CMD ARGS…]`: prepares the kernel, initramfs, root overlay and config
/// disk for an OCI image, runs the VM as a child `vireo run` (so the VMM's seccomp filter and jail
/// never cover this process, which still has to read the status and clean up), and exits with the
/// status of the image's program, as guest/image-init.c reported it on the config disk.
enum ImageRun {
    /// The kernel command line for image VMs: quiet, so the console carries the program's output.
    static let cmdline = "console=ttyS0 quiet loglevel=0 panic=-1 lpj=1000000"

    /// Runs and exits when `arguments` (the process's, with the program name) are `run … --image …`.
    static func interceptIfImage(_ arguments: [String]) {
        guard arguments.count >= 2, arguments[1] == "run" else { return }
        let runArguments = Array(arguments.dropFirst(2))
        let optionPart = runArguments.prefix { $0 != "--" }
        guard optionPart.contains(where: { $0 == "--image" || $0.hasPrefix("--image=") }) else { return }
        exit(run(runArguments))
    }

    static func run(_ arguments: [String]) -> Int32 {
        let parsed: ImageRunArguments
        do { parsed = try ImageRunArguments.parse(arguments) } catch {
            printError("vireo: \(error)\n")
            return 2
        }
        let prepared: PreparedImageRun
        do { prepared = try PreparedImageRun.prepare(parsed) } catch {
            printError("vireo: \(error)\n")
            return 2
        }
        defer { prepared.cleanUp() }
        var vmmArguments = ["run"] + prepared.runArguments
        var handOff: WarmHandOff?
        if let warm = WarmStart.snapshot(for: parsed, prepared) {
            vmmArguments = ["run"] + prepared.restoreArguments(snapshot: warm.directory, options: warm.options.restore,
                                                               controlSocket: warm.preparation?.controlSocket)
            handOff = WarmHandOff(socket: prepared.signalSocket ?? "", key: warm.key, verbose: warm.options.verbose,
                                  image: warm.image, preparation: warm.preparation)
        }
        let started = Date()
        let vmCode: Int32
        // -t: the host terminal passes every byte, ^C included, to the program's terminal in the guest.
        let terminal = parsed.terminal ? HostTerminal.enterRaw() : nil
        defer { terminal?.restore() }
        if parsed.terminal, let socket = prepared.signalSocket { TerminalResize.start(socket: socket, sent: prepared.terminalSize) }
        var handingOff = false
        do {
            vmCode = try VMMChild.run(vmmArguments, signalSocket: prepared.signalSocket) { pid in
                handingOff = true
                handOff?.start(vmm: pid, since: started)
            }
        } catch {
            printError("vireo: \(error)\n")
            if handingOff { handOff?.finish() } else { handOff?.preparation?.abandon() }
            return 1
        }
        handOff?.finish()
        if let status = GuestConfigDisk.status(at: prepared.configDisk) {
            let outOfMemory = GuestConfigDisk.outOfMemory(at: prepared.configDisk)
            if outOfMemory {
                printError("vireo: the guest kernel's OOM killer killed a process (the VM's RAM ran out; --memory gives it more)\n")
            }
            ExitReport.write(status: status, outOfMemory: outOfMemory)
            return status
        }
        ExitReport.write(status: vmCode == 0 ? 1 : vmCode, outOfMemory: false)
        if vmCode == 0 {
            printError("vireo: the guest ended without reporting the program's exit status\n")
            return 1
        }
        return vmCode  // 2 (bad options), 3 (guest kernel panic), 128+N (stopped by signal N), …
    }
}
