#if canImport(Glibc)
import Glibc
#endif

/// The host account a VM's VMM drops to (`isolation.user`/`group`): it owns the VM's `vmm/`
/// directory, because the VMM keeps writing its console log and control socket there after the drop.
struct VMOwner {
    let uid: uid_t
    let gid: gid_t

    init(uid: uid_t, gid: gid_t) {
        self.uid = uid
        self.gid = gid
    }

    /// The owner for these settings, or nil when the VMM keeps the daemon's identity.
    init?(_ isolation: IsolationDefinition) throws(APIError) {
        guard let user = isolation.user else { return nil }
        var gid: gid_t
        if let number = UInt32(user) {
            uid = number
            gid = getpwuid(number)?.pointee.pw_gid ?? number
        } else if let entry = getpwnam(user) {
            uid = entry.pointee.pw_uid
            gid = entry.pointee.pw_gid
        } else {
            throw .startFailed("no user '\(user)' on this host")
        }
        if let group = isolation.group {
            if let number = UInt32(group) {
                gid = number
            } else if let entry = getgrnam(group) {
                gid = entry.pointee.gr_gid
            } else {
                throw .startFailed("no group '\(group)' on this host")
            }
        }
        self.gid = gid
    }
}
