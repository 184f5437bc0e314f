#if canImport(Glibc)
import Glibc
#endif

/// Starts the VMM's device threads (virtio workers, the serial output thread) with the signal mask
/// they need: process-directed signals (SIGINT, SIGTERM) belong to the VMM's signal thread and must
/// neither interrupt nor kill a device thread, while synchronous ones stay deliverable — a blocked
/// SIGSYS from the seccomp filter, or a blocked trap, would kill the VMM without the reporter naming it.
enum DeviceThread {
    /// Runs `body` on a new joinable pthread; returns its handle, or the pthread_create error.
    static func start(_ body: @escaping () -> Void) -> Result<pthread_t, DeviceThreadError> {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        for synchronous in [SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT] { sigdelset(&all, synchronous) }
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return .failure(DeviceThreadError(errno: result))
        }
        return .success(thread)
    }

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
}

/// pthread_create's error number.
struct DeviceThreadError: Error {
    let errno: Int32
}
