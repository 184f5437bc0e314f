import Glibc
import Testing
@testable import Manager

/// The per-VM uid a root daemon gives a VMM without `isolation.user` (issue 12, finding 4).
@Suite struct VMMPrivilegesTests {
    @Test func aVMWithoutAUserGetsAFreeIDOfTheRangeAndItsGroup() throws {
        guard geteuid() == 0 else { return }  // a non-root daemon cannot switch users: nothing to allocate
        let plain = VMDefinition(name: "plain", kernel: "/k")
        let (definition, uid) = try VMMPrivileges.effective(plain, inUse: [], previous: nil)
        let id = try #require(uid)
        #expect(VMMPrivileges.perVMRange.contains(id))
        #expect(definition.isolation.user == String(id) && definition.isolation.group == String(id))
        #expect(getpwuid(id) == nil)
        // Held by another VM: the next free one; kept when it is this VM's and free.
        let other = try VMMPrivileges.allocate(for: "plain", inUse: [id], previous: nil)
        #expect(other != id && VMMPrivileges.perVMRange.contains(other))
        #expect(try VMMPrivileges.allocate(for: "plain", inUse: [], previous: other) == other)
        #expect(try VMMPrivileges.allocate(for: "plain", inUse: [other], previous: other) != other)
    }

    @Test func anExplicitUserIsLeftAlone() throws {
        var definition = VMDefinition(name: "r", kernel: "/k")
        definition.isolation.user = "root"
        let (result, uid) = try VMMPrivileges.effective(definition, inUse: [], previous: nil)
        #expect(uid == nil && result == definition)
    }

    @Test func theProcessIdentityIsReadFromProc() {
        let identity = VMMPrivileges.identity(ofProcess: getpid())
        #expect(identity?.uid == getuid() && identity?.gid == getgid())
        #expect(VMMPrivileges.identity(ofProcess: -1) == nil)
    }
}
