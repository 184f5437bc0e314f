import Foundation

/// What the shim takes from an OCI runtime bundle's config.json (runtime-spec config.md): the
/// process to run, the VM's size and its cgroup's path. Everything else in the spec (namespaces, seccomp,
/// mounts, devices) describes a container on the host kernel; the VM boundary replaces it.
struct OCIBundle {
    struct Process: Decodable {
        struct User: Decodable {
            var uid: UInt32?
            var gid: UInt32?
        }
        var terminal: Bool?
        var args: [String]?
        var env: [String]?
        var cwd: String?
        var user: User?
    }
    struct Memory: Decodable { var limit: Int64? }
    struct Resources: Decodable { var memory: Memory? }
    struct Linux: Decodable {
        var resources: Resources?
        var cgroupsPath: String?
    }
    struct Config: Decodable {
        var process: Process?
        var hostname: String?
        var linux: Linux?
        /// CRI's pod annotations among them (PodAnnotations).
        var annotations: [String: String]?
    }

    /// config.json is containerd's (trusted), but still bounded: a spec over 1 MiB is refused.
    static let maximumConfig = 1 << 20

    let config: Config

    init(path bundle: String) throws {
        let path = bundle + "/config.json"
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ShimError(ShimError.invalidArgument, "cannot read \(path)")
        }
        defer { try? handle.close() }
        let data = handle.readData(ofLength: OCIBundle.maximumConfig + 1)
        guard data.count <= OCIBundle.maximumConfig else { throw ShimError(ShimError.invalidArgument, "\(path) is over 1 MiB") }
        do { config = try JSONDecoder().decode(Config.self, from: data) } catch {
            throw ShimError(ShimError.invalidArgument, "\(path): \(error)")
        }
        guard let args = config.process?.args, !args.isEmpty else {
            throw ShimError(ShimError.invalidArgument, "\(path): process.args is empty")
        }
    }

    /// `vireo run` options for the VM and the program (the image the shim builds has no config of its
    /// own, so these are the whole process).
    func runArguments() -> (options: [String], command: [String]) {
        var options: [String] = []
        let process = config.process
        for variable in process?.env ?? [] where variable.contains("=") { options += ["--env", variable] }
        if let cwd = process?.cwd, !cwd.isEmpty { options += ["--workdir", cwd] }
        let uid = process?.user?.uid ?? 0, gid = process?.user?.gid ?? 0
        options += ["--user", "\(uid):\(gid)"]
        if let hostname = config.hostname, !hostname.isEmpty { options += ["--hostname", hostname] }
        options += ["--memory", "\(memoryMiB)M"]
        return (options, process?.args ?? [])
    }

    /// The memory limit as the VM's size: at least 128 MiB (the guest kernel's floor here), 256 MiB
    /// when the spec sets none.
    var memoryMiB: Int64 {
        guard let limit = config.linux?.resources?.memory?.limit, limit > 0 else { return 256 }
        return max(128, limit >> 20)
    }
}
