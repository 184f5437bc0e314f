internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// The unprivileged user and group a VMM switches to.
public struct UserIdentity: Equatable, Sendable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32
    public var name: String

    public var description: String { "\(name) (uid \(uid), gid \(gid))" }

    /// Resolves `--uid` (name or number, which must exist in the user database) and `--gid`
    /// (name or number; default the user's primary group).
    public static func resolve(user: String, group: String?) throws(VMMError) -> UserIdentity {
        let entry: UnsafeMutablePointer<passwd>?
        if let number = UInt32(user) {
            entry = getpwuid(number)
        } else {
            entry = getpwnam(user)
        }
        guard let entry else {
            if let number = UInt32(user), UserIdentity.perVMRange.contains(number) { return try perVM(number, group: group) }
            throw .invalidConfiguration("--uid: no user '\(user)' on this host")
        }
        var identity = UserIdentity(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
                                    name: String(cString: entry.pointee.pw_name))
        if let group {
            let groupEntry: UnsafeMutablePointer<Glibc.group>?
            if let number = UInt32(group) { groupEntry = getgrgid(number) } else { groupEntry = getgrnam(group) }
            guard let groupEntry else { throw .invalidConfiguration("--gid: no group '\(group)' on this host") }
            identity.gid = groupEntry.pointee.gr_gid
        }
        return identity
    }

    /// The ids `vireo serve` gives the VMMs of VMs without `isolation.user`, one per running VM
    /// (the daemon's VMMPrivileges.perVMRange, which must stay equal). They need no account: like
    /// Firecracker's jailer `--uid`, a bare number nothing else on the host owns files as.
    public static let perVMRange: ClosedRange<UInt32> = 0x7E56_0000...0x7E56_FFFF

    /// A per-VM id without an account; its group is `--gid` if given, else the same number.
    private static func perVM(_ uid: UInt32, group: String?) throws(VMMError) -> UserIdentity {
        var identity = UserIdentity(uid: uid, gid: uid, name: "per-VM uid \(uid)")
        if let group {
            if let number = UInt32(group) {
                identity.gid = number
            } else if let entry = getgrnam(group) {
                identity.gid = entry.pointee.gr_gid
            } else {
                throw .invalidConfiguration("--gid: no group '\(group)' on this host")
            }
        }
        return identity
    }

    /// A numeric identity (VMSpec.Isolation.uid): an account's uid, or a per-VM id without one.
    /// Its group is `gid`, else the account's primary group, else the same number.
    public static func numeric(uid: UInt32, gid: UInt32?) throws(VMMError) -> UserIdentity {
        if let entry = getpwuid(uid) {
            return UserIdentity(uid: uid, gid: gid ?? entry.pointee.pw_gid, name: String(cString: entry.pointee.pw_name))
        }
        guard perVMRange.contains(uid) else {
            throw .invalidConfiguration("isolation.uid \(uid) has no account and is outside the per-VM range \(perVMRange.lowerBound)–\(perVMRange.upperBound)")
        }
        return UserIdentity(uid: uid, gid: gid ?? uid, name: "per-VM uid \(uid)")
    }

    /// The `vireo` user, if the host has one (what a jail runs as without --uid).
    static var vireoUser: UserIdentity? { try? resolve(user: "vireo", group: nil) }

    /// True when this user may create files in `directory` (owner, group or other bits; no ACLs).
    func canWrite(directory: String) -> Bool {
        if uid == 0 { return true }
        var info = stat()
        guard stat(directory, &info) == 0 else { return false }
        let mode = info.st_mode
        if info.st_uid == uid { return mode & 0o300 == 0o300 }
        if info.st_gid == gid { return mode & 0o030 == 0o030 }
        return mode & 0o003 == 0o003
    }
}

/// Dropping privileges in the VMM process (single-threaded, before any vCPU runs).
enum Privileges {
    /// Empties the bounding set, switches to `user` (if any), clears every capability.
    static func drop(to user: UserIdentity?) throws(VMMError) {
        let bounding = csys_drop_bounding_set()
        if bounding != 0 && bounding != -EPERM {
            throw .invalidConfiguration("cannot drop the capability bounding set: \(String(cString: strerror(-bounding)))")
        }
        if let user {
            let switched = csys_switch_user(user.uid, user.gid)
            guard switched == 0 else {
                throw .invalidConfiguration("cannot switch to \(user): \(String(cString: strerror(-switched)))")
            }
        }
        let cleared = csys_clear_capabilities()
        guard cleared == 0 else {
            throw .invalidConfiguration("cannot drop capabilities: \(String(cString: strerror(-cleared)))")
        }
    }

    /// Sets no_new_privs (required for seccomp without CAP_SYS_ADMIN; blocks setuid gains).
    static func setNoNewPrivileges() throws(VMMError) {
        let result = csys_set_no_new_privs()
        guard result == 0 else { throw .invalidConfiguration("cannot set no_new_privs: \(String(cString: strerror(-result)))") }
    }

    /// The calling thread's effective capabilities (0 when all are dropped).
    static var effectiveCapabilities: Int64 { Int64(csys_effective_capabilities()) }
}
