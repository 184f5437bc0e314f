import Testing
@testable import Manager

/// The lifecycle state machine and how VMM exits are read.
@Suite struct LifecycleTests {
    @Test func allowedTransitions() {
        let expected: [VMAction: Set<VMState>] = [
            .start: [.defined, .stopped, .crashed, .error],
            .stop: [.running, .paused],
            .kill: [.starting, .running, .paused, .stopping],
            .pause: [.running],
            .resume: [.paused],
            .restart: [.running, .paused],
            .delete: [.defined, .stopped, .crashed, .error],
            .update: [.defined, .stopped, .crashed, .error],
            .snapshot: [.running, .paused],
        ]
        for action in VMAction.allCases {
            for state in VMState.allCases {
                #expect(Lifecycle.allows(action, in: state) == expected[action]!.contains(state), "\(action) in \(state)")
            }
        }
    }

    @Test func targets() {
        #expect(Lifecycle.target(of: .start, from: .defined) == .running)
        #expect(Lifecycle.target(of: .pause, from: .running) == .paused)
        #expect(Lifecycle.target(of: .resume, from: .paused) == .running)
        #expect(Lifecycle.target(of: .stop, from: .paused) == .stopped)
        #expect(Lifecycle.target(of: .kill, from: .starting) == .stopped)
        #expect(Lifecycle.target(of: .delete, from: .stopped) == nil)
        #expect(Lifecycle.target(of: .update, from: .crashed) == .crashed)
        #expect(Lifecycle.target(of: .snapshot, from: .running) == .running)
    }

    @Test func anInvalidTransitionIsAConflictNamingTheState() {
        #expect(throws: APIError.self) { try Lifecycle.check(.pause, name: "a", state: .stopped) }
        do {
            try Lifecycle.check(.resume, name: "web", state: .running)
            Issue.record("resume of a running VM was allowed")
        } catch {
            #expect(error.status == 409)
            #expect(error.code == "invalid_state")
            #expect(error.state == .running)
            #expect(error.message == "cannot resume VM 'web': it is running (resume needs paused)")
        }
        #expect(throws: Never.self) { try Lifecycle.check(.start, name: "a", state: .crashed) }
    }

    @Test func processStates() {
        #expect(VMState.allCases.filter(\.hasProcess) == [.starting, .running, .paused, .stopping])
    }

    @Test func exitStatusesMapToStoppedCrashedOrError() {
        #expect(ExitOutcome.classify(status: 0, requested: nil).state == .stopped)
        #expect(ExitOutcome.classify(status: 1, requested: nil, detail: "triple fault").reason == "VMM failure: triple fault")
        #expect(ExitOutcome.classify(status: 1, requested: nil).state == .crashed)
        #expect(ExitOutcome.classify(status: 2, requested: nil).state == .error)
        #expect(ExitOutcome.classify(status: 3, requested: nil) == ExitOutcome(state: .crashed, reason: "the guest kernel panicked", status: 3))
        #expect(ExitOutcome.classify(status: 137, requested: nil).reason == "the VMM was killed by signal 9")
        #expect(ExitOutcome.classify(status: nil, requested: nil).state == .crashed)
        // What the user asked for is never a crash.
        #expect(ExitOutcome.classify(status: 137, requested: .kill) == ExitOutcome(state: .stopped, reason: "killed by request", status: 137))
        #expect(ExitOutcome.classify(status: 0, requested: .stop).reason == "stopped by request")
        #expect(ExitOutcome.classify(status: 137, requested: .stop).reason == "stopped by request (forced)")
    }

    @Test func restartPolicies() {
        let crash = ExitOutcome.classify(status: 137, requested: nil)
        let powerOff = ExitOutcome.classify(status: 0, requested: nil)
        let refused = ExitOutcome.classify(status: 2, requested: nil)
        let stopped = ExitOutcome.classify(status: 0, requested: .stop)
        #expect(!crash.restarts(under: .no, requested: nil))
        #expect(crash.restarts(under: .onFailure, requested: nil))
        #expect(!powerOff.restarts(under: .onFailure, requested: nil))
        #expect(powerOff.restarts(under: .always, requested: nil))
        #expect(crash.restarts(under: .always, requested: nil))
        #expect(!refused.restarts(under: .always, requested: nil), "a definition the VMM refuses would only fail again")
        #expect(!stopped.restarts(under: .always, requested: .stop))
        #expect(!crash.restarts(under: .always, requested: .kill))
    }
}
