/// What the end of a VMM process means for its VM, from `vireo run`'s exit status.
public struct ExitOutcome: Sendable, Equatable {
    public var state: VMState
    public var reason: String
    /// The exit status, or nil when it could not be learnt.
    public var status: Int?

    /// Why the process ended, if the daemon asked it to.
    public enum Request: Sendable { case stop, kill }

    /// `vireo run` exits 0 after a power-off/reboot, 1 on a VMM failure, 2 on bad input, 3 after a
    /// guest kernel panic, 128+N when killed by signal N.
    public static func classify(status: Int?, requested: Request?, detail: String? = nil) -> ExitOutcome {
        func withDetail(_ text: String) -> String {
            guard let detail, !detail.isEmpty else { return text }
            return "\(text): \(detail)"
        }
        switch requested {
        case .kill: return ExitOutcome(state: .stopped, reason: "killed by request", status: status)
        case .stop:
            let forced = status.map { $0 >= 128 } ?? false
            return ExitOutcome(state: .stopped, reason: forced ? "stopped by request (forced)" : "stopped by request", status: status)
        case nil: break
        }
        guard let status else {
            return ExitOutcome(state: .crashed, reason: "the VMM process ended while the daemon was not watching; its exit status is unknown", status: nil)
        }
        switch status {
        case 0: return ExitOutcome(state: .stopped, reason: "the guest powered off or rebooted", status: 0)
        case 1: return ExitOutcome(state: .crashed, reason: withDetail("VMM failure"), status: 1)
        case 2: return ExitOutcome(state: .error, reason: withDetail("the VMM refused the definition"), status: 2)
        case 3: return ExitOutcome(state: .crashed, reason: "the guest kernel panicked", status: 3)
        case 129...192: return ExitOutcome(state: .crashed, reason: "the VMM was killed by signal \(status - 128)", status: status)
        default: return ExitOutcome(state: .crashed, reason: withDetail("the VMM exited with status \(status)"), status: status)
        }
    }

    /// Whether `policy` asks for another start after this outcome (never after a user's stop or kill).
    public func restarts(under policy: RestartPolicy, requested: Request?) -> Bool {
        guard requested == nil else { return false }
        switch policy {
        case .no: return false
        case .onFailure: return state == .crashed
        case .always: return state == .crashed || state == .stopped
        }
    }
}
