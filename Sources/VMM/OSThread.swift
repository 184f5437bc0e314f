#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A plain OS thread (pthread): vCPUs and blocking I/O never run on Swift's cooperative pool.
final class OSThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private var handle = pthread_t()
    private var joined = false
    private let finishedFlag = Atomic<Bool>(false)

    /// True once the thread's body has returned.
    var isFinished: Bool { finishedFlag.load(ordering: .acquiring) }

    /// Starts `body` on a new thread; `name` documents its role at the call site.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body { [self] in
            nameCurrentThread(name)
            body()
            finishedFlag.store(true, ordering: .releasing)
        }).toOpaque()
        let result = pthread_create(&handle, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    /// Waits for the thread to finish.
    func join() {
        guard !joined else { return }
        joined = true
        pthread_join(handle, nil)
    }

    /// Sends `signal` to this thread (used to kick a vCPU out of KVM_RUN).
    func signal(_ signal: Int32) {
        if !joined { pthread_kill(handle, signal) }
    }
}

/// A counting semaphore: threads `post` when they finish so a waiter wakes at once instead of
/// at its next poll.
final class Wakeup: @unchecked Sendable {
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(semaphore, 0, 0) }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func post() { sem_post(semaphore) }

    /// Waits for a post, at most `seconds`.
    func wait(seconds: Double) {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + Int(seconds * 1e9)
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        while sem_timedwait(semaphore, &deadline) != 0 && errno == EINTR {}
    }
}
