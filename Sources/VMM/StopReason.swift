/// Why a VM stopped, and the exit status `vireo run` reports for it.
public enum StopReason: Equatable, Sendable, CustomStringConvertible {
    /// The guest reset the machine (i8042 reset line, e.g. `reboot`): Vireo does not reboot, the VM ends.
    case guestReset
    /// The guest asked for power-off.
    case guestPowerOff
    /// The guest kernel panicked (seen on the console) and then reset.
    case guestPanic
    /// The guest wrote to the isa-debug-exit port.
    case debugExit(code: Int32)
    /// The guest triple-faulted.
    case tripleFault
    /// A stop was requested through the control socket.
    case requested
    /// Vireo received a signal (SIGINT, SIGTERM, SIGHUP).
    case signal(Int32)
    /// The VMM could not go on: emulation failure, KVM error, bad entry state.
    case error(String)

    /// The process exit status for this reason (documented in docs/cli.md).
    public var exitCode: Int32 {
        switch self {
        case .guestReset, .guestPowerOff, .requested: return 0
        case .guestPanic: return 3
        case let .debugExit(code): return code
        case .tripleFault, .error: return 1
        case let .signal(number): return 128 + number
        }
    }

    public var description: String {
        switch self {
        case .guestReset: return "the guest reset the machine (reboot); the VM has stopped"
        case .guestPowerOff: return "the guest powered off"
        case .guestPanic: return "the guest kernel panicked"
        case let .debugExit(code): return "the guest wrote to the debug-exit port (exit code \(code))"
        case .tripleFault: return "the guest triple-faulted (CPU shutdown)"
        case .requested: return "stopped by request on the API socket"
        case let .signal(number): return "stopped by signal \(number)"
        case let .error(message): return message
        }
    }
}
