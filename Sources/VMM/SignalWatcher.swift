#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGINT, SIGTERM and SIGHUP into a clean VM stop, and the `--snapshot-on` signal into a
/// snapshot.
///
/// The signals are blocked in every thread (set before vCPU threads start, so they inherit the
/// mask) and taken synchronously by one thread with sigwait.
enum SignalWatcher {
    static let stopSignals = [SIGINT, SIGTERM, SIGHUP]
    /// Signals `--snapshot-on` may name (SIGUSR1 kicks vCPUs; the stop signals stop).
    static let snapshotSignals: [(name: String, number: Int32)] = [("SIGUSR2", SIGUSR2), ("SIGQUIT", SIGQUIT)]

    /// Blocks the stop signals (and `extra`) in the calling thread and threads it creates later.
    static func blockStopSignals(extra: Int32? = nil) {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in stopSignals + [extra].compactMap({ $0 }) { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Starts the thread that waits for a stop signal and stops `control`; `snapshot` runs on
    /// each `snapshotSignal`, and the thread goes on waiting.
    static func start(control: MachineControl, snapshotSignal: Int32? = nil, snapshot: @escaping @Sendable () -> Void = {}) -> OSThread {
        OSThread(name: "vireo-signals") {
            var set = sigset_t()
            sigemptyset(&set)
            for signal in stopSignals + [snapshotSignal].compactMap({ $0 }) { sigaddset(&set, signal) }
            while true {
                var received: Int32 = 0
                guard sigwait(&set, &received) == 0 else { continue }
                if received == snapshotSignal {
                    snapshot()
                    continue
                }
                control.stop(.signal(received))
                return
            }
        }
    }
}

extension Machine {
    /// Signals `--snapshot-on` may name.
    public static var snapshotSignals: [(name: String, number: Int32)] { SignalWatcher.snapshotSignals }
}
