/// Where a VM is in its life. `starting` and `stopping` are transient: an operation is in flight.
public enum VMState: String, Codable, Sendable, CaseIterable {
    /// Created, never started.
    case defined
    case starting
    case running
    case paused
    case stopping
    /// Ended cleanly: the guest powered off or rebooted, or the user stopped or killed it.
    case stopped
    /// Ended unexpectedly: VMM failure, guest kernel panic, or killed by a signal nobody asked for.
    case crashed
    /// Could not start: the VMM refused the definition (e.g. a kernel file that is not a kernel).
    case error

    /// A VMM process exists for the VM.
    public var hasProcess: Bool {
        switch self {
        case .starting, .running, .paused, .stopping: return true
        case .defined, .stopped, .crashed, .error: return false
        }
    }
}

/// What a user can ask of a VM.
public enum VMAction: String, Sendable, CaseIterable {
    case start, stop, kill, pause, resume, restart, delete, update, snapshot
}

/// The lifecycle state machine: which action is allowed in which state, and where it leads.
///
/// ```
/// defined ─start→ starting → running ⇄ paused      (pause / resume)
/// running|paused ─stop→ stopping → stopped          (graceful, then forced after a timeout)
/// running|paused|starting|stopping ─kill→ stopped
/// VMM exit: 0 → stopped, crash → crashed (restart policy may start it again), refused → error
/// running|paused ─snapshot→ same state (a running VM is paused for the snapshot, then resumed)
/// stopped|crashed|error ─start→ starting; ─update/delete→ (definition changed / gone)
/// ```
public enum Lifecycle {
    /// States from which `action` may be taken.
    public static func allowedStates(for action: VMAction) -> Set<VMState> {
        switch action {
        case .start: return [.defined, .stopped, .crashed, .error]
        case .stop: return [.running, .paused]
        case .kill: return [.starting, .running, .paused, .stopping]
        case .pause: return [.running]
        case .resume: return [.paused]
        case .restart, .snapshot: return [.running, .paused]
        case .delete, .update: return [.defined, .stopped, .crashed, .error]
        }
    }

    public static func allows(_ action: VMAction, in state: VMState) -> Bool {
        allowedStates(for: action).contains(state)
    }

    /// The state a successful `action` leaves the VM in (nil for delete).
    public static func target(of action: VMAction, from state: VMState) -> VMState? {
        switch action {
        case .start, .restart, .resume: return .running
        case .stop, .kill: return .stopped
        case .pause: return .paused
        case .delete: return nil
        case .update, .snapshot: return state
        }
    }

    /// Throws a conflict naming the current state when `action` is not allowed.
    public static func check(_ action: VMAction, name: String, state: VMState) throws(APIError) {
        guard allows(action, in: state) else {
            let allowed = VMState.allCases.filter { allowedStates(for: action).contains($0) }.map(\.rawValue)
            throw APIError.invalidState(
                "cannot \(action.rawValue) VM '\(name)': it is \(state.rawValue) (\(action.rawValue) needs \(allowed.joined(separator: " or ")))",
                state: state)
        }
    }
}
