#if canImport(Glibc)
import Glibc
#endif

/// A blocking gate for parking vCPU threads while the VM is paused (pthread mutex + condition).
/// @unchecked Sendable: The pthread mutex and condition are allocated once; `closed` and `waiting` are read and written only with the mutex held.
final class Gate: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var closed = false
    private var waiting = 0

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func close() { pthread_mutex_lock(mutex); closed = true; pthread_mutex_unlock(mutex) }

    func open() {
        pthread_mutex_lock(mutex)
        closed = false
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Threads currently parked in `pass`.
    var parkedCount: Int {
        pthread_mutex_lock(mutex); defer { pthread_mutex_unlock(mutex) }
        return waiting
    }

    /// Blocks while the gate is closed.
    func pass() {
        pthread_mutex_lock(mutex)
        waiting += 1
        while closed { pthread_cond_wait(condition, mutex) }
        waiting -= 1
        pthread_mutex_unlock(mutex)
    }
}
