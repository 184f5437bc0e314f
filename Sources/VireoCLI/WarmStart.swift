import Foundation
import Images
import VMMCommand
import VMM

/// Decides whether an image run restores a warm-start snapshot instead of booting, and makes the
/// snapshot on the first run of a guest kernel + image init + VM shape (see docs/images.md).
enum WarmStart {
    struct Plan {
        let directory: String
        let key: String
        let options: WarmStartOptions
        /// Set when `directory` is the image's own ready snapshot (its root disk template already copied into the run).
        var image = false
        /// Set when this run restores the generic snapshot and makes the image's snapshot on the way.
        var preparation: ImagePreparation?
    }

    /// The snapshot to restore, or nil for a cold boot: `--cold`, options a snapshot cannot hold, or a
    /// snapshot that could not be made or trusted (one line on stderr says why).
    static func snapshot(for arguments: ImageRunArguments, _ prepared: PreparedImageRun) -> Plan? {
        let verbose = arguments.passthrough.contains { $0 == "-v" || $0 == "--verbose" }
        if arguments.cold {
            if verbose { printError("vireo: cold boot (--cold)\n") }
            return nil
        }
        guard arguments.published.isEmpty else {
            // The warm snapshot has no NIC; -p adds one.
            if verbose { printError("vireo: cold boot (-p adds a NIC; a warm start covers --cpus and --memory)\n") }
            return nil
        }
        guard prepared.signalSocket != nil else {
            if verbose { printError("vireo: cold boot (a warm start needs the image run's own vsock device)\n") }
            return nil
        }
        let options: WarmStartOptions
        switch WarmStartOptions.classify(arguments.passthrough) {
        case let .success(classified): options = classified
        case let .failure(reason):
            if verbose { printError("vireo: cold boot (\(reason.option) changes the VM's devices; a warm start covers --cpus and --memory)\n") }
            return nil
        }
        let cache: WarmSnapshotCache
        let key: String
        do {
            cache = try WarmSnapshotCache(store: prepared.store)
            key = try WarmSnapshotCache.key(.init(kernel: prepared.kernel, initramfs: prepared.initrd, commandLine: prepared.cmdline,
                                                  cpus: options.cpus, memory: options.memory, build: try buildIdentity()))
        } catch {
            printError("vireo: no warm start: \(error); booting cold\n")
            return nil
        }
        let imageSnapshots = ProcessInfo.processInfo.environment["VIREO_IMAGE_SNAPSHOTS"] != "off"
        if imageSnapshots, let plan = ImageSnapshots.restorable(prepared, genericKey: key, options: options) { return plan }
        do {
            var plan: Plan
            if let directory = try verified(cache, key, disks: 2 + prepared.spareDisks) {
                plan = Plan(directory: directory, key: key, options: options)
            } else {
                let lock = try cache.lock(key)
                defer { withExtendedLifetime(lock) {} }
                // Another run may have made it while we waited for the lock.
                if let directory = try verified(cache, key, disks: 2 + prepared.spareDisks) {
                    plan = Plan(directory: directory, key: key, options: options)
                } else {
                    try make(cache, key, prepared, options)
                    guard let directory = try verified(cache, key, disks: 2 + prepared.spareDisks) else { throw ImageError("the new snapshot is missing") }
                    plan = Plan(directory: directory, key: key, options: options)
                }
            }
            if imageSnapshots { plan.preparation = ImageSnapshots.preparation(prepared, genericKey: key, options: options) }
            return plan
        } catch let error as UnusableSnapshot {
            printError("vireo: the cached warm-start snapshot \(cache.path(key)) is unusable (\(error.reason)); removed it, booting cold\n")
            cache.discard(key)
            return nil
        } catch {
            printError("vireo: cannot make the warm-start snapshot: \(error); booting cold\n")
            return nil
        }
    }

    /// The cached snapshot for `key`, checked (owner, modes, checksum, devices), or nil when none is cached.
    private static func verified(_ cache: WarmSnapshotCache, _ key: String, disks: Int) throws -> String? {
        let directory: String?
        do { directory = try cache.lookup(key) } catch { throw UnusableSnapshot(reason: "\(error)") }
        guard let directory else { return nil }
        try checkDevices(directory, disks: disks)
        return directory
    }

    /// Throws unless the snapshot in `directory` reads back whole and holds exactly an image run's devices (`disks`: its root and config disks and its spare slots).
    static func checkDevices(_ directory: String, disks: Int) throws {
        let summary: SnapshotSummary
        do { summary = try SnapshotSummary.read(directory) } catch { throw UnusableSnapshot(reason: "\(error)") }
        guard summary.diskCount == disks, summary.netCount == 0, !summary.rng, summary.optionalDevices.count == 1 else {
            throw UnusableSnapshot(reason: "it holds other devices than an image run's")
        }
    }

    /// Boots the warm-up VM and commits its snapshot under `key`.
    private static func make(_ cache: WarmSnapshotCache, _ key: String, _ prepared: PreparedImageRun, _ options: WarmStartOptions) throws {
        let log = "\(prepared.store.logDirectory)/warm-\(key.prefix(16)).log"
        ImageCache.progress("first run of this guest kernel and VM shape: booting it once to make a warm-start snapshot (log: \(log))")
        let staging = try cache.stage(key)
        do {
            try WarmUpBoot.run(staging: staging, kernel: prepared.kernel, initrd: prepared.initrd, cmdline: prepared.cmdline,
                               spareDisks: prepared.spareDisks, options: options.warmUp, log: log)
            try cache.commit(staging: staging, key: key)
        } catch {
            cache.abandon(staging)
            throw error
        }
    }

    /// This vireo binary's identity for the key: a rebuilt binary may save snapshots differently.
    static func buildIdentity() throws -> String {
        var info = stat()
        guard stat("/proc/self/exe", &info) == 0 else { throw ImageError("cannot stat the vireo binary: \(String(cString: strerror(errno)))") }
        return "\(info.st_dev)-\(info.st_ino)-\(info.st_size)-\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }

    struct UnusableSnapshot: Error {
        let reason: String
    }
}
