import Glibc
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
}
