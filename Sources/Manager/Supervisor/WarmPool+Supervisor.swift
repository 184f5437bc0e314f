import Logging
#if canImport(Glibc)
import Glibc
#endif

extension WarmPool {
    /// The daemon's pool for its configuration: nil without `--warm-pool`, or (logged) when the VMM
    /// executable is not `vireo-vmm`, the one program with a pool mode.
    static func make(_ configuration: Supervisor.Configuration, logger: Logger) -> WarmPool? {
        guard configuration.warmPoolSize > 0 else { return nil }
        guard configuration.vmmExecutable.hasSuffix("/vireo-vmm") else {
            logger.warning("warm pool off: the VMM executable \(configuration.vmmExecutable) is not vireo-vmm")
            return nil
        }
        return WarmPool(size: configuration.warmPoolSize, executable: configuration.vmmExecutable,
                        stateDirectory: configuration.stateDirectory, logger: logger)
    }
}

extension Supervisor {
    /// A snapshot restore started by a warm-pool member: the spec is the one a fresh VMM gets (sent
    /// with the hand-off), the member gets the VM's files as descriptors and runs it under the same
    /// confinement. Nil also for a spec too large for the hand-off message.
    /// Returns the member's shim pid, its pid (published as the VMM's) and the socket on which its VMM says `up` (WarmPool.waitUntilUp;
    /// the caller closes it); nil when there is no pool, the VM boots a kernel, or no member that fits is
    /// ready (the caller then starts a VMM the usual way).
    func startFromWarmPool(_ definition: VMDefinition, confinement: VMMConfinement, paths: VMPaths,
                           lockFD: Int32, heldFD: Int32?, timeline: inout WarmPoolTimeline) throws(APIError) -> (shim: Int32, pid: Int32, upSocket: Int32)? {
        guard let warmPool, let snapshot = definition.restore else { return nil }
        // The spec travels in the hand-off (the VMM reads no file); one that does not fit a message
        // (48 KiB; a restore's is usually under 1 KiB) starts a fresh VMM instead.
        let specText = try launcher.specText(launcher.spec(for: definition, confinement: confinement))
        guard specText.utf8.count <= WarmPoolHandoff.inlineSpecLimit else { return nil }
        // The guest RAM size, for the replacement member refill() starts (it registers that much
        // ahead); only a hint: the hand-off checks the file it opens.
        var info = stat()
        if lstat(snapshot + "/memory.bin", &info) == 0, info.st_mode & S_IFMT == S_IFREG {
            warmPool.expect(memoryBytes: UInt64(info.st_size))
        }
        guard let member = warmPool.take(jailed: confinement.jail ?? definition.isolation.jail ?? false) else {
            warmPool.refill()
            return nil
        }
        var handedOver = false
        defer {
            if !handedOver {
                warmPool.discard(member)  // closing its socket ends an unused member
                warmPool.refill()
            }
        }
        timeline.mark("daemon: spec made, member taken")
        do {
            try WarmPoolHandoff.handOff(member, paths: paths, snapshot: snapshot, lockFD: lockFD, heldFD: heldFD,
                                        spec: specText, timeline: &timeline)
        } catch where error.status == 422 {
            throw error
        } catch {
            return nil  // the member went away: a fresh VMM instead
        }
        handedOver = true
        try? launcher.writeSpecText(specText, paths: paths)  // for the record: the VMM has it already
        return (member.shim, member.pid, member.socket)
    }
}
