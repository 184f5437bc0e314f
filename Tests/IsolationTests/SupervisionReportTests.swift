import Testing
@testable import VMM

/// The report a warm-pool VMM forked ahead sends its root supervisor (what to remove at its end):
/// it round-trips, and anything that would make the supervisor remove something else is refused.
@Suite struct SupervisionReportTests {
    let report = SupervisionReport(jailRoot: "/run/vireo/jail/vm-42", createdRoot: true,
                                   cgroupDirectories: ["/sys/fs/cgroup/system.slice/vireo/vm-42"], readKernelLog: true)

    @Test func roundTrips() {
        #expect(SupervisionReport.decode(report.encoded, vmID: "vm-42") == report)
        var bare = report
        bare.cgroupDirectories = []
        bare.createdRoot = false
        bare.readKernelLog = false
        #expect(SupervisionReport.decode(bare.encoded, vmID: "vm-42") == bare)
    }

    @Test func refusesWhatWouldRemoveSomethingElse() {
        func decoded(_ text: String) -> SupervisionReport? { SupervisionReport.decode(Array(text.utf8), vmID: "vm-42") }
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\n") != nil)
        // Another VM's cgroup, a cgroup outside a `vireo` parent, a path that climbs out, a relative one.
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\ncgroup /sys/fs/cgroup/vireo/vm-43\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\ncgroup /sys/fs/cgroup/vm-42\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\ncgroup /sys/fs/cgroup/../../etc/vireo/vm-42\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/../../etc\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 run/vireo/jail/vm-42\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 //etc\n") == nil)
        // Malformed: another version, flags that are not 0/1, a missing end of line, a NUL, extra lines, too many cgroups.
        #expect(decoded("supervise 2 0\njail 1 /run/vireo/jail/vm-42\n") == nil)
        #expect(decoded("supervise 1 x\njail 1 /run/vireo/jail/vm-42\n") == nil)
        #expect(decoded("supervise 1 0\njail 2 /run/vireo/jail/vm-42\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\0\n") == nil)
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\nremove /etc\n") == nil)
        let many = (0..<4).map { "cgroup /sys/fs/cgroup/c\($0)/vireo/vm-42\n" }.joined()
        #expect(decoded("supervise 1 0\njail 1 /run/vireo/jail/vm-42\n" + many) == nil)
        #expect(decoded("") == nil)
        #expect(SupervisionReport.decode([UInt8](repeating: 0x41, count: SupervisionReport.maximumBytes + 1), vmID: "vm-42") == nil)
    }
}
