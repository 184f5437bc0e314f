#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A plain OS thread (pthread): vCPUs and blocking I/O never run on Swift's cooperative pool.
/// @unchecked Sendable: `handle` is written once, by `init`, before the object is visible to another thread; `joined` and the finished flag are a Mutex and an Atomic.
final class OSThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private var handle = pthread_t()
    /// Whether the thread was joined; `signal` holds the same lock, so a kick can never reach a
    /// thread id that `join` already released (and the system may have reused).
    private let joined = Mutex(false)
    private let finishedFlag = Atomic<Bool>(false)

    /// True once the thread's body has returned.
    var isFinished: Bool { finishedFlag.load(ordering: .acquiring) }

    /// Starts `body` on a new thread; `name` documents its role at the call site. `finished` wakes a
    /// waiter once `isFinished` is true: posting from inside `body` would let the waiter see the
    /// post before the flag and sleep until its next poll.
    init(name: String, finished: Wakeup? = nil, _ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(Body { [self] in
            nameCurrentThread(name)
            body()
            finishedFlag.store(true, ordering: .releasing)
            finished?.post()
        }).toOpaque()
        let result = pthread_create(&handle, nil, { argument in
            Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    /// Waits for the thread to finish (once; later calls return at once).
    func join() {
        let first = joined.withLock { joined -> Bool in
            defer { joined = true }
            return !joined
        }
        guard first else { return }
        pthread_join(handle, nil)
    }

    /// Sends `signal` to this thread (used to kick a vCPU out of KVM_RUN); nothing once it was joined.
    func signal(_ signal: Int32) {
        joined.withLock { joined in
            if !joined { pthread_kill(handle, signal) }
        }
    }
}

/// Counts posts so a waiter wakes at once instead of at its next poll: threads `post` when they
/// finish. Deadlines use CLOCK_MONOTONIC, so a wall-clock step neither shortens nor stretches a wait.
/// @unchecked Sendable: The pthread mutex and condition are allocated once; `posts` is read and written only with the mutex held.
final class Wakeup: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var posts = 0

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func post() {
        pthread_mutex_lock(mutex)
        posts += 1
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Waits for a post (consuming it), at most `seconds`.
    func wait(seconds: Double) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + Int(seconds * 1e9)
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_mutex_lock(mutex)
        while posts == 0 {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
        }
        if posts > 0 { posts -= 1 }
        pthread_mutex_unlock(mutex)
    }
}
