/// Where a VM's runtime files live: `<state-dir>/vms/<name>/`.
public struct VMPaths: Sendable, Equatable {
    public let directory: String

    public init(stateDirectory: String, name: String) {
        directory = "\(stateDirectory)/vms/\(name)"
    }

    /// The serial console, appended to by the VMM and rotated to `console.log.1` past its limit.
    public var consoleLog: String { directory + "/" + VMPaths.consoleLogName }
    /// The previous console log after a rotation.
    public var rotatedConsoleLog: String { consoleLog + ".1" }
    /// The VMM's control socket.
    public var apiSocket: String { directory + "/" + VMPaths.apiSocketName }
    /// The VMM pid, written by the shim right after it starts the VMM.
    public var pidFile: String { directory + "/vmm.pid" }
    /// The VMM's exit status, written by the shim when the VMM ends.
    public var exitFile: String { directory + "/vmm.exit" }
    /// The VMM's stdout and stderr for its latest run.
    public var vmmLog: String { directory + "/vmm.log" }

    // The VMM runs with its VM directory as working directory and gets these relative names, so
    // that no socket path exceeds sun_path's 107 bytes however deep the state directory is.
    static let consoleLogName = "console.log"
    static let apiSocketName = "api.sock"
}
