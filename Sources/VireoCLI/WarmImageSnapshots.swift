import Foundation
import Images
import VMMCommand

/// The per-image "ready" snapshots of `vireo run --image` (see docs/images.md, "Image snapshots"):
/// a run that finds one restores it with a copy of its root disk template, so the program's exec is
/// the first thing left to the guest; a run that finds none restores the generic warm-start snapshot
/// and makes one on the way (`ImagePreparation`, driven by `WarmHandOff`).
enum ImageSnapshots {
    /// Options of the restoring VMM under which a run does not make the image snapshot: another uid
    /// or a jail (the VMM could not write into the cache), or the user's own control socket.
    static let optionsWithoutPreparation: Set<String> = ["--jail", "--jail-dir", "--uid", "--gid", "--api-socket"]
    /// Options under which a run does not restore one either: a jailed VMM restores the generic
    /// snapshot (the image snapshot's path with a jail is not tested yet).
    static let optionsWithoutRestore: Set<String> = ["--jail", "--jail-dir", "--uid", "--gid"]

    /// A plan that restores the image's own snapshot, its template already copied into the run's
    /// directory; nil when none is cached (or it was unusable: one line says so, and it is removed).
    static func restorable(_ prepared: PreparedImageRun, genericKey: String, options: WarmStartOptions) -> WarmStart.Plan? {
        guard !options.restore.contains(where: { optionsWithoutRestore.contains(String($0.prefix { $0 != "=" })) }) else { return nil }
        let cache: ImageSnapshotCache
        let key: String
        do {
            cache = try ImageSnapshotCache(store: prepared.store)
            key = try ImageSnapshotCache.key(generic: genericKey, base: prepared.base)
        } catch {
            printError("vireo: no image snapshot: \(error)\n")
            return nil
        }
        do {
            let found: String?
            do { found = try cache.lookup(base: prepared.base, key: key) } catch { throw WarmStart.UnusableSnapshot(reason: "\(error)") }
            guard let directory = found else { return nil }
            try WarmStart.checkDevices(directory, disks: 2 + prepared.spareDisks)
            do {
                try SparseCopy.copy(directory + "/root.overlay", to: prepared.overlay)
                try SparseCopy.copy(directory + "/root.overlay.map", to: prepared.overlay + ".map")
            } catch {
                throw WarmStart.UnusableSnapshot(reason: "its root disk template: \(error)")
            }
            return WarmStart.Plan(directory: directory, key: key, options: options, image: true)
        } catch {
            let reason = (error as? WarmStart.UnusableSnapshot)?.reason ?? "\(error)"
            printError("vireo: the cached image snapshot \(cache.path(base: prepared.base, key: key)) is unusable (\(reason)); removed it, restoring the generic warm-start snapshot\n")
            cache.discard(base: prepared.base, key: key)
            unlink(prepared.overlay)
            unlink(prepared.overlay + ".map")
            return nil
        }
    }

    /// What a run needs to make the image's snapshot while it restores the generic one; nil when it
    /// cannot (no program, a VMM option that isolates it from the cache, another run making it now).
    static func preparation(_ prepared: PreparedImageRun, genericKey: String, options: WarmStartOptions) -> ImagePreparation? {
        // The init takes a program name under 1 KiB and a PATH under 2 KiB (guest/image-init.c).
        guard let program = prepared.program, !program.isEmpty, program.utf8.count < 1024, prepared.searchPath.utf8.count < 2048,
              let control = prepared.controlSocket,
              !options.restore.contains(where: { optionsWithoutPreparation.contains(String($0.prefix { $0 != "=" })) }) else { return nil }
        do {
            let cache = try ImageSnapshotCache(store: prepared.store)
            let key = try ImageSnapshotCache.key(generic: genericKey, base: prepared.base)
            guard let lock = try cache.tryLock(base: prepared.base, key: key) else { return nil }  // another run is making it
            // Another run may have made it since we looked.
            if (try? cache.lookup(base: prepared.base, key: key)) != nil { return nil }
            let staging = try cache.warm.stage(key)
            return ImagePreparation(cache: cache, base: prepared.base, key: key, staging: staging, lock: lock,
                                    controlSocket: control, overlay: prepared.overlay, program: program, searchPath: prepared.searchPath)
        } catch {
            printError("vireo: cannot make the image snapshot: \(error)\n")
            return nil
        }
    }
}

/// A run's making of its image's snapshot: once the restored generic guest has prepared (root
/// mounted and entered, program pre-read, synced) and said READY, `capture` pauses the VM, has the
/// VMM snapshot it into the staging directory, copies the root overlay beside it as the template
/// (the disk exactly as the snapshot's page cache knows it), and resumes the VM. `commit` then
/// renames it into place; `abandon` removes it. The lock is held until then.
struct ImagePreparation: Sendable {
    let cache: ImageSnapshotCache
    let base: String
    let key: String
    let staging: String
    let lock: WarmSnapshotLock
    let controlSocket: String
    let overlay: String
    let program: String
    let searchPath: String

    /// The prepare hand-off line: like the run's, with the program and its PATH (hex: any bytes but NUL).
    func line() -> String {
        let go = WarmHandOff.line().dropFirst("VIREOGO1 ".count).dropLast()
        return "VIREOPREP1 \(go) \(ImagePreparation.hex(program)) \(ImagePreparation.hex(searchPath))\n"
    }

    private static func hex(_ text: String) -> String {
        text.utf8.map { String(format: "%02x", $0) }.joined()
    }

    /// Pauses, snapshots and resumes the VM (resumed whatever happens, once it was paused).
    func capture() throws {
        try WarmControl.request(controlSocket, "pause")
        defer { _ = try? WarmControl.request(controlSocket, "resume") }
        let snapshot = staging + "/snapshot"
        try WarmControl.request(controlSocket, "snapshot \(snapshot)")
        try SparseCopy.copy(overlay, to: snapshot + "/root.overlay")
        try SparseCopy.copy(overlay + ".map", to: snapshot + "/root.overlay.map")
    }

    func commit() throws {
        try cache.commit(staging: staging, base: base, key: key)
    }

    func abandon() { cache.warm.abandon(staging) }
}
