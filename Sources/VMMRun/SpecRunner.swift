import KVM
import VMM
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// Runs one VM from a validated spec in the foreground: isolation, machine, console, report.
/// `vireo run`'s flags and `vireo-vmm run --spec FILE` both end here.
package struct SpecRunner {
    let spec: VMSpec
    let verbose: Bool
    /// The snapshot as descriptors (a warm-pool VMM); nil: the spec's restore directory by path.
    let snapshotFiles: SnapshotFiles?
    /// Set for a VMM a warm-pool member forked ahead: its supervisor's cgroup and jail name.
    let forkedAheadID: String?
    /// With `forkedAheadID`: the socket to the supervisor, for its SupervisionReport, and the
    /// descriptors that go with it (the VM's `vmm.log` and directory).
    let supervisorSocket: Int32
    let supervisorDescriptors: [Int32]
    /// With `forkedAheadID`: the nice value to return to (the daemon's) before the machine is built.
    let niceness: Int32?
    /// Called once the guest's vCPU threads are started.
    let started: (() -> Void)?

    package init(spec: VMSpec, verbose: Bool, snapshotFiles: SnapshotFiles? = nil, forkedAheadID: String? = nil,
                 supervisorSocket: Int32 = -1, supervisorDescriptors: [Int32] = [], niceness: Int32? = nil,
                 started: (() -> Void)? = nil) {
        self.spec = spec
        self.verbose = verbose
        self.snapshotFiles = snapshotFiles
        self.forkedAheadID = forkedAheadID
        self.supervisorSocket = supervisorSocket
        self.supervisorDescriptors = supervisorDescriptors
        self.niceness = niceness
        self.started = started
    }

    /// The isolation plan for this spec (`config`'s paths made absolute when jailed).
    static func plan(_ spec: VMSpec, config: inout VMConfig, vmID: String? = nil) throws -> IsolationPlan {
        // An unset mode (a spec file that leaves it to the host) is $VIREO_SECCOMP's, checked like the flag, or on.
        let seccomp = try spec.isolation.seccomp ?? RunFlags.seccompMode(nil) ?? .on
        return try IsolationPlan.prepare(IsolationSettings(spec: spec, defaultSeccomp: seccomp), config: &config, vmID: vmID)
    }

    package func run() throws {
        var config = VMConfig(spec: spec)
        let machine: Machine
        let isolationPlan: IsolationPlan
        do {
            isolationPlan = try SpecRunner.plan(spec, config: &config, vmID: forkedAheadID)
            PoolMilestones.mark("isolation plan")
            if forkedAheadID != nil {
                try isolationPlan.joinForkedAhead(reportingTo: supervisorSocket, passing: supervisorDescriptors)  // the warm-pool member
            } else {
                try isolationPlan.launch()  // a supervisor, when needed, stays in here until the VMM ends
            }
            PoolMilestones.mark("cgroups, jail directory made and reported")
            // A VMM forked ahead waited at a better nice value (WarmPoolMember): back to the daemon's
            // before anything of the VM starts (threads and passt inherit it).
            if let niceness { Niceness.set(niceness) }
            if let files = snapshotFiles {
                machine = try Machine(restoring: files, options: config)
            } else if let restore = spec.restoreDirectory {
                machine = try Machine(restoring: restore, options: config)
            } else {
                machine = try Machine(config: config)
            }
            PoolMilestones.mark("machine restored")
            try isolationPlan.enter(helpers: machine.helperProcesses)
            PoolMilestones.mark("seccomp control filter")
        } catch let error as VMMError {
            throw UsageError(error.description)
        } catch let error as UsageError {
            throw error
        } catch {
            throw UsageError("\(error)")
        }
        if verbose {
            printError("vireo: host: \(machine.hostKind); \(machine.config.cpus) vCPU(s), \(ByteSize.format(machine.config.memoryBytes)); \(machine.hasPIT ? "in-kernel PIT" : "no PIT"); cmdline: \(machine.commandLine)\n")
        }
        // Printed only once the VM is built, so that a refused run still fails with exactly one line.
        if geteuid() == 0 && spec.isolation.user == nil && !spec.isolation.jail {
            printError("vireo: running the VMM as root without --uid or --jail; see docs/security.md\n")
        }
        for line in isolationPlan.warnings + (verbose ? isolationPlan.summary : []) { printError("vireo: \(line)\n") }
        let terminal = RawTerminal(fd: 0)
        if config.consoleInputFD != nil { terminal.enter() }
        let outcome = machine.run(isolation: isolationPlan, started: started)
        terminal.restore()
        report(outcome, machine: machine)
        throw VMExit(code: outcome.reason.exitCode)
    }

    private func report(_ outcome: RunOutcome, machine: Machine) {
        let reason = outcome.reason
        if !machine.stuckVCPUs.isEmpty {
            printError("vireo: vCPU(s) \(machine.stuckVCPUs.map(String.init).joined(separator: ", ")) did not leave KVM_RUN within \(Int(Machine.stopGraceSeconds)) s of the stop; exiting anyway\n")
        }
        if verbose {
            let s = outcome.statistics
            let milestones = Timeline.milestonesMs
            printError("vireo: first guest entry \(format3(milestones.firstEntry)) ms, first exit \(format3(milestones.firstExit)) ms after process start\n")
            printError("vireo: first guest entry at CLOCK_MONOTONIC \(format6(Timeline.firstEntryMonotonic)) s\n")
            printError("vireo: ran \(format3(outcome.runSeconds)) s; exits: io \(s.io), mmio \(s.mmio), emulated \(s.emulated), injected \(s.injected), kicks \(s.interrupted)\n")
            printError("vireo: accesses no device claimed: \(machine.unclaimedAccesses.ports) port, \(machine.unclaimedAccesses.mmio) MMIO\n")
            for snapshot in machine.vcpuSnapshots() { printError("vireo: \(snapshot)\n") }
            printError("vireo: memory: peak RSS \(outcome.peakRSS / 1024) KiB, guest RAM resident \(outcome.guestResident / 1024) KiB, VMM overhead \(outcome.overhead / 1024) KiB\n")
        }
        if reason.exitCode == 0 {
            if verbose { printError("vireo: \(reason)\n") }
        } else {
            printError("vireo: \(reason)\n")
        }
    }
}
