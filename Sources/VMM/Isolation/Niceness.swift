#if canImport(Glibc)
import Glibc
#endif

/// This thread's nice value (inherited by the threads and processes it starts): a warm-pool VMM
/// waits for its VM at a better one, and its member handles the VMM's report at a worse one.
public enum Niceness {
    public static var current: Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }

    /// Sets it; lowering it below the current value needs root (CAP_SYS_NICE), and a refusal leaves it as it was.
    public static func set(_ value: Int32) { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, value) }
}
