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
public final class MachineControl: @unchecked Sendable {
    private struct State {
        var reason: StopReason?
        var vcpus: [(vcpu: VCPU, thread: OSThread?)] = []
    }

    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    /// Posted by `stop` and by each vCPU thread as it ends: what the thread waiting for the VM sleeps on.
    let wakeup = Wakeup()

    public init() {}

    /// True once a stop was requested; vCPU loops check it before every entry.
    @inline(__always)
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

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
    }
}
