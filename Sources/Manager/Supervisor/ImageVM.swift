import Foundation
import Images
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's side of an image VM: imports its image into `<state-dir>/images` (the cache
/// `vireo pull` and `vireo run --image` use), builds the base, and before each start writes the
/// config disk and adds the root overlay (vda) and config disk (vdb) to the definition.
///
/// The VM's two disks live in `<state-dir>/images/runs/vm-NAME/` (root's, 0700; `vireo images du`
/// counts them as runs): inside the daemon's own image root, which a jailed VMM opens disks
/// beneath, and not in the VM directory, which is no image root (a definition naming another
/// VM's files there is refused). The VMM opens both as root before it drops to its per-VM uid.
enum ImageVM {
    static func directory(_ name: String, stateDirectory: String) -> String {
        "\(stateDirectory)/images/runs/vm-\(name)"
    }
    /// The config disk the image init reads the command from and writes the exit status to.
    static func configDisk(_ name: String, stateDirectory: String) -> String {
        directory(name, stateDirectory: stateDirectory) + "/config.disk"
    }
    /// The copy-on-write root, created by the VMM; kept across starts, as a container keeps its
    /// filesystem, and removed with the VM.
    static func overlay(_ name: String, stateDirectory: String) -> String {
        directory(name, stateDirectory: stateDirectory) + "/root.overlay"
    }

    /// Removes a deleted VM's disks.
    static func remove(_ name: String, stateDirectory: String) {
        try? FileManager.default.removeItem(atPath: directory(name, stateDirectory: stateDirectory))
    }

    /// Imports the image (a pull for a registry reference) and checks it can run; the record names it.
    static func importImage(_ section: ImageDefinition, stateDirectory: String) throws(APIError) -> ImageRecord {
        do {
            let store = try ImageStore(stateDirectory: stateDirectory)
            let record = try ImageImporter(store: store).resolve(section.reference)
            _ = try runSpec(section, record: record, store: store, hostname: "check")
            _ = try BaseBuilder(store: store).base(for: record)  // now, so that a start unpacks nothing
            return record
        } catch let error as APIError {
            throw error
        } catch {
            throw .invalidField("image.reference", "field 'image.reference': \(error)")
        }
    }

    /// The definition the VMM runs for this start, and the shared lock on the image's base that
    /// keeps `vireo images rm` from removing it (handed to the shim, held until the VMM ends).
    static func prepare(_ definition: VMDefinition, section: ImageDefinition, stateDirectory: String) throws(APIError)
        -> (definition: VMDefinition, lock: BaseLock) {
        do {
            let store = try ImageStore(stateDirectory: stateDirectory)
            let record = try store.record(section.reference) ?? ImageImporter(store: store).resolve(section.reference)
            let base = try BaseBuilder(store: store).base(for: record)
            let lock = try BaseLock(base: base.path)
            let spec = try runSpec(section, record: record, store: store, hostname: definition.name)
            let vmDirectory = directory(definition.name, stateDirectory: stateDirectory)
            if mkdir(vmDirectory, 0o700) != 0 && errno != EEXIST {
                throw ImageError("cannot create \(vmDirectory): \(String(cString: strerror(errno)))")
            }
            let disk = configDisk(definition.name, stateDirectory: stateDirectory)
            unlink(disk)  // a fresh one each start: the previous run's exit status must not be read again
            try GuestConfigDisk.write(spec, to: disk)
            var running = definition
            running.disks = [DiskDefinition(path: overlay(definition.name, stateDirectory: stateDirectory), readOnly: false, backing: base.path),
                             DiskDefinition(path: disk, readOnly: false, backing: nil)] + definition.disks
            return (running, lock)
        } catch let error as APIError {
            throw error
        } catch {
            throw .startFailed("VM '\(definition.name)': image \(section.reference): \(error)")
        }
    }

    /// The program's exit status the image init wrote on the config disk, if it got that far.
    static func programStatus(_ name: String, stateDirectory: String) -> Int32? {
        GuestConfigDisk.status(at: configDisk(name, stateDirectory: stateDirectory))
    }

    private static func runSpec(_ section: ImageDefinition, record: ImageRecord, store: ImageStore, hostname: String) throws -> RunSpec {
        let config = try JSONDecoder().decode(ImageConfiguration.self, from: try store.readBlob(record.configDigest))
        var overrides = RunSpec.Overrides()
        overrides.command = section.command ?? []
        overrides.entrypoint = section.entrypoint
        overrides.environment = section.env ?? []
        overrides.workingDirectory = section.workdir
        overrides.user = section.user
        overrides.hostname = hostname
        // Never the daemon's environment: `env` entries are KEY=VALUE (the validator checks).
        return try RunSpec.make(config: config, overrides: overrides, hostEnvironment: [:], defaultHostname: hostname)
    }
}
