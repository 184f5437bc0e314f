import Glibc
import Synchronization
import Testing
@testable import Manager

/// The per-VM uid a root daemon gives a VMM without `isolation.user` (issue 12, finding 4).
@Suite struct VMMPrivilegesTests {
    @Test func aVMWithoutAUserGetsAFreeIDOfTheRangeAndItsGroup() throws {
        guard geteuid() == 0 else { return }  // a non-root daemon cannot switch users: nothing to allocate
        let plain = VMDefinition(name: "plain", kernel: "/k")
        let id = try #require(try VMMPrivileges.perVMUID(for: plain, inUse: [], previous: nil))
        #expect(VMMPrivileges.perVMRange.contains(id))
        #expect(getpwuid(id) == nil)
        // It reaches the VMM typed, as the spec's isolation.uid/gid, never as a user name.
        let spec = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20)
            .spec(for: plain, confinement: VMMConfinement(uid: id, jail: true))
        #expect(spec.isolation.uid == id && spec.isolation.gid == id && spec.isolation.user == nil && spec.isolation.jail)
        // Held by another VM: the next free one; kept when it is this VM's and free.
        let other = try VMMPrivileges.allocate(for: "plain", inUse: [id], previous: nil)
        #expect(other != id && VMMPrivileges.perVMRange.contains(other))
        #expect(try VMMPrivileges.allocate(for: "plain", inUse: [], previous: other) == other)
        #expect(try VMMPrivileges.allocate(for: "plain", inUse: [other], previous: other) != other)
    }

    @Test func anExplicitUserIsLeftAlone() throws {
        var definition = VMDefinition(name: "r", kernel: "/k")
        definition.isolation.user = "root"
        #expect(try VMMPrivileges.perVMUID(for: definition, inUse: [], previous: nil) == nil)
    }

    @Test func theProcessIdentityIsReadFromProc() {
        let identity = VMMPrivileges.identity(ofProcess: getpid())
        #expect(identity?.uid == getuid() && identity?.gid == getgid())
        #expect(VMMPrivileges.identity(ofProcess: -1) == nil)
    }

    /// A warm pool's tracker: a start takes the last scan while it is fresh and scans itself once
    /// it is not; the ids a scan finds are in use for the allocation.
    @Test func theTrackerReusesAFreshScanAndRescansAStaleOne() throws {
        let calls = Mutex(0)
        let tracker = RunningUIDTracker(scan: {
            calls.withLock { $0 += 1 }
            return [VMMPrivileges.perVMRange.lowerBound + 7]
        })
        #expect(tracker.current() == [VMMPrivileges.perVMRange.lowerBound + 7] && calls.withLock { $0 } == 1)
        #expect(tracker.current().count == 1 && calls.withLock { $0 } == 1, "a fresh scan was not reused")
        tracker.rescan()
        #expect(calls.withLock { $0 } == 2)
        let taken = VMMPrivileges.perVMRange.lowerBound + 7
        let id = try VMMPrivileges.allocate(for: "x", inUse: tracker.current(), previous: taken, unassigned: tracker.isUnassigned)
        #expect(id != taken && VMMPrivileges.perVMRange.contains(id))
        #expect(tracker.isUnassigned(id) == VMMPrivileges.isUnassigned(id))
    }
}
