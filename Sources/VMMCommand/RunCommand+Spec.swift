import ArgumentParser
import VMM

extension RunCommand {
    /// The flags as `RunFlags`, which turns them into the VM's spec for both `vireo run` and the
    /// hand-parsed `vireo-vmm run`.
    var flags: RunFlags {
        var flags = RunFlags()
        flags.kernel = kernel
        flags.restore = restore
        flags.initrd = initrd
        flags.cmdline = cmdline
        flags.cpus = cpus
        flags.memory = memory
        flags.disk = disk
        flags.net = net
        flags.rng = rng
        flags.vsock = devices.vsock
        flags.balloon = devices.balloon
        flags.balloonTarget = devices.balloonTarget
        flags.virtioConsole = devices.virtioConsole
        flags.consoleLog = consoleLog
        flags.consoleLogMax = consoleLogMax
        flags.apiSocket = apiSocket
        flags.snapshotOn = snapshotOn
        flags.snapshotDir = snapshotDir
        flags.noConsole = noConsole
        flags.noStdin = noStdin
        flags.boot = boot
        flags.pit = pit
        flags.debugExit = debugExit
        flags.verbose = verbose
        flags.seccomp = isolation.seccomp
        flags.jail = isolation.jail
        flags.jailDir = isolation.jailDir
        flags.uid = isolation.uid
        flags.gid = isolation.gid
        flags.resources = isolation.resources.flags
        flags.spec = spec
        return flags
    }

    /// The VM these flags (or `--spec FILE`) describe, or ArgumentParser's one-line validation error.
    func vmSpec() throws -> VMSpec {
        do { return try flags.vmSpec() } catch { throw error.validation }
    }
}
