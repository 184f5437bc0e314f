/// Where a VM's runtime files live: `<state-dir>/vms/<name>/`, written only by the daemon (root):
/// the files it trusts (pid and exit records, the VMM's log). The VMM's own files (console logs,
/// control socket) live in `vmm/` below it, the only place the VM's user may write.
public struct VMPaths: Sendable, Equatable {
    public let directory: String

    public init(stateDirectory: String, name: String) {
        directory = "\(stateDirectory)/vms/\(name)"
    }

    /// The serial console, appended to by the VMM and rotated to `console.log.1` past its limit.
    public var consoleLog: String { vmmDirectory + "/" + VMPaths.consoleLogFile }
    /// The previous console log after a rotation.
    public var rotatedConsoleLog: String { vmmDirectory + "/" + VMPaths.rotatedConsoleLogFile }
    /// What the VMM (and the VM's user, where it drops to one) may write.
    public var vmmDirectory: String { directory + "/" + VMPaths.vmmDirectoryName }
    /// The VMM's control socket.
    public var apiSocket: String { directory + "/" + VMPaths.apiSocketName }
    /// The VMM pid, written by the shim right after it starts the VMM.
    public var pidFile: String { directory + "/vmm.pid" }
    /// The VMM's exit status, written by the shim when the VMM ends.
    public var exitFile: String { directory + "/vmm.exit" }
    /// Held (flock) by the running VMM and its shim: one VMM per VM (VMLock).
    public var lockFile: String { directory + "/vmm.lock" }
    /// The spec the VMM runs (`run --spec`), written by the daemon before each start.
    public var specFile: String { directory + "/" + VMPaths.specName }
    /// The VMM's stdout and stderr for its latest run.
    public var vmmLog: String { directory + "/vmm.log" }
    /// The older part of `vmm.log` once it passed its limit (VMMLog).
    public var rotatedVMMLog: String { directory + "/vmm.log.1" }

    // The VMM runs with its VM directory as working directory and gets these relative names, so
    // that no socket path exceeds sun_path's 107 bytes however deep the state directory is.
    static let vmmDirectoryName = "vmm"
    static let consoleLogFile = "console.log"
    static let rotatedConsoleLogFile = "console.log.1"
    static let consoleLogName = "vmm/console.log"
    static let apiSocketName = "vmm/api.sock"
    static let specName = "vmm.spec.json"
}
