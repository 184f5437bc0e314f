import KVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The signal used to kick vCPU threads out of KVM_RUN.
let kickSignal = SIGUSR1

/// Stop coordination for one VM: records the first stop reason and kicks every vCPU out of KVM_RUN.
///
/// A kick is kvm_run.immediate_exit (catches a vCPU about to enter) plus a signal (catches one
/// already inside), as Firecracker does.
public final class MachineControl: Sendable {
    private struct State {
        var reason: StopReason?
        var vcpus: [(vcpu: VCPU, thread: OSThread?)] = []
    }

    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    private let pausing = Atomic<Bool>(false)
    /// Where vCPU threads park while the VM is paused.
    let pauseGate = Gate()
    /// Posted by `stop` and by each vCPU thread as it ends: what the thread waiting for the VM sleeps on.
    let wakeup = Wakeup()

    public init() {}

    /// True once a stop was requested; vCPU loops check it before every entry.
    @inline(__always)
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// True while a pause is requested or in effect; vCPU loops park when they see it.
    @inline(__always)
    var isPausing: Bool { pausing.load(ordering: .acquiring) }

    /// Number of vCPU threads still running their loop.
    var liveVCPUCount: Int { state.withLock { $0.vcpus.filter { $0.thread?.isFinished != true }.count } }

    /// How long every vCPU gets to leave KVM_RUN and park before a pause fails.
    static let parkDeadlineSeconds = 5.0

    /// Asks every vCPU to leave KVM_RUN and park; returns once all have. If one has not parked by
    /// the deadline the pause is undone (the parked ones continue) and it throws: a VM marked
    /// paused with a vCPU still running would give an inconsistent snapshot.
    public func pause() throws(PauseError) {
        pauseGate.close()
        pausing.store(true, ordering: .releasing)
        kickAll()
        let deadline = MonotonicClock.now() + MachineControl.parkDeadlineSeconds
        while pauseGate.parkedCount < liveVCPUCount {
            if isStopping { resume(); throw .stopping }
            if MonotonicClock.now() >= deadline {
                let running = liveVCPUCount - pauseGate.parkedCount
                resume()
                throw .vcpusDidNotPark(running: running, of: liveVCPUCount, seconds: MachineControl.parkDeadlineSeconds)
            }
            kickAll()
            usleep(1_000)
        }
    }

    /// Lets parked vCPUs continue exactly where they stopped.
    public func resume() {
        pausing.store(false, ordering: .releasing)
        pauseGate.open()
    }

    /// The reason recorded by the first `stop`.
    public var reason: StopReason? { state.withLock { $0.reason } }

    func register(vcpu: VCPU, thread: OSThread) {
        let kickNow = state.withLock { state -> Bool in
            state.vcpus.append((vcpu, thread))
            return state.reason != nil
        }
        if kickNow { vcpu.setImmediateExit(true); thread.signal(kickSignal) }
    }

    /// Requests that the VM stop for `reason` (only the first reason is kept).
    public func stop(_ reason: StopReason) {
        let targets = state.withLock { state -> [(vcpu: VCPU, thread: OSThread?)] in
            if state.reason == nil { state.reason = reason }
            return state.vcpus
        }
        stopping.store(true, ordering: .releasing)
        kick(targets)
        pauseGate.open()  // parked vCPUs must see the stop
        wakeup.post()
    }

    /// Kicks every vCPU again (a signal may have landed just before a thread entered KVM_RUN).
    func kickAll() {
        kick(state.withLock { $0.vcpus })
    }

    private func kick(_ targets: [(vcpu: VCPU, thread: OSThread?)]) {
        for target in targets where target.thread?.isFinished != true {
            target.vcpu.setImmediateExit(true)
            target.thread?.signal(kickSignal)
        }
    }

    /// Installs a no-op handler for the kick signal, without SA_RESTART so KVM_RUN returns EINTR.
    static func installKickHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(kickSignal, &action, nil)
        // A parent may have started the VMM with the signal blocked (the mask is inherited): then a
        // kick would wait for the guest's next exit. vCPU threads inherit this thread's mask.
        var kick = sigset_t()
        sigemptyset(&kick)
        sigaddset(&kick, kickSignal)
        pthread_sigmask(SIG_UNBLOCK, &kick, nil)
    }
}
