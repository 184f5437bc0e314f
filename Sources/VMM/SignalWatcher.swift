#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGINT, SIGTERM and SIGHUP into a clean VM stop.
///
/// The signals are blocked in every thread (set before vCPU threads start, so they inherit the
/// mask) and taken synchronously by one thread with sigwait.
enum SignalWatcher {
    static let stopSignals = [SIGINT, SIGTERM, SIGHUP]

    /// Blocks the stop signals in the calling thread (and threads it creates later).
    static func blockStopSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in stopSignals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Starts the thread that waits for a stop signal and stops `control`.
    static func start(control: MachineControl) -> OSThread {
        OSThread(name: "vireo-signals") {
            var set = sigset_t()
            sigemptyset(&set)
            for signal in stopSignals { sigaddset(&set, signal) }
            var received: Int32 = 0
            while sigwait(&set, &received) != 0 {}
            control.stop(.signal(received))
        }
    }
}
