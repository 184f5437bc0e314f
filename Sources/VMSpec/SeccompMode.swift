/// `--seccomp`: how the VMM's syscall filters treat a call outside the allowlist.
public enum SeccompMode: String, Codable, CaseIterable, Sendable {
    /// SECCOMP_RET_TRAP: a SIGSYS handler names the syscall on stderr and ends the VMM (exit 159).
    case on
    /// SECCOMP_RET_KILL_PROCESS: the kernel kills the VMM; `vireo run` supervises it and reports
    /// the syscall from the kernel's audit line (or just "SIGSYS" when the log is unreadable).
    case kill
    /// SECCOMP_RET_LOG: nothing is denied, would-be denials are logged by the kernel (audit type 1326).
    case log
    /// No filter at all (debugging only; `vireo run` says so on stderr).
    case off
}
