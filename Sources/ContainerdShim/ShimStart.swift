import ContainerdShimAPI
import Foundation

/// `start`: makes the shim's socket, starts the serving shim with it as fd 3 in a session of its
/// own (it must outlive containerd restarts), writes `address` into the bundle (containerd reads it
/// when it restarts) and prints the address. containerd reads stdout and stderr together as the
/// address, so nothing else may be printed on success.
enum ShimStart {
    static func run(_ arguments: ShimArguments, arguments argv: [String]) throws -> Never {
        drainStandardInput()  // the runtime options (a protobuf Any): none are defined for vireo yet
        var arguments = arguments
        // A container of a pod goes to its sandbox's shim (the socket is named by the sandbox id),
        // which runs it in the pod's VM, as runc's and Kata's shims group a pod.
        if let spec = try? OCIBundle(path: FileManager.default.currentDirectoryPath), let sandbox = PodAnnotations.sandbox(of: spec.config) {
            arguments.group = sandbox
            let path = arguments.socketPath
            guard let fd = try? UnixSocket.connect(path) else {
                throw ShimUsage("the pod's sandbox \(sandbox) has no running vireo shim (start the sandbox first)")
            }
            close(fd)
            try writeAddress("unix://" + path)
            print("unix://" + path)
            exit(0)
        }
        let path = arguments.socketPath
        let address = "unix://" + path
        let directory = (path as NSString).deletingLastPathComponent
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw ShimUsage("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        if access(path, F_OK) == 0 {
            if let fd = try? UnixSocket.connect(path) {
                // A shim for this task already serves (containerd retried): hand out its address.
                close(fd)
                try writeAddress(address)
                print(address)
                exit(0)
            }
            unlink(path)
        }
        let listener = try UnixSocket.listen(path)
        do {
            try writeAddress(address)
            try spawnServer(argv: argv.filter { $0 != "start" }, listener: listener)
        } catch {
            unlink(path)
            throw error
        }
        print(address)
        exit(0)
    }

    private static func writeAddress(_ address: String) throws {
        do { try address.write(toFile: "address", atomically: true, encoding: .utf8) } catch {
            throw ShimUsage("cannot write the bundle's address file: \(error)")
        }
    }

    private static func spawnServer(argv: [String], listener: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        // containerd reads the shim's stderr from the bundle's `log` FIFO (it holds it open for
        // reading); non-blocking, so a containerd that stops reading costs log lines, not a stuck VM.
        let log = open("log", O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW)
        if log >= 0 {
            posix_spawn_file_actions_adddup2(&actions, log, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        defer { if log >= 0 { close(log) } }
        posix_spawn_file_actions_adddup2(&actions, listener, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (glibc 2.26+; the Glibc module hides the _GNU_SOURCE constant): a new session.
        posix_spawnattr_setflags(&attributes, 0x80)
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? argv[0]
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, cArguments, environ)
        guard result == 0 else { throw ShimUsage("cannot start the serving shim: \(String(cString: strerror(result)))") }
    }

    private static func drainStandardInput() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while total < 1 << 20 {
            let got = read(0, &buffer, buffer.count)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return }
            total += got
        }
    }
}

/// `delete`: cleans up after a shim that died (containerd runs it when it cannot reach the shim):
/// stops the VM it left (the vireo pid in the bundle), removes its cgroup, unmounts the rootfs, removes the socket, and
/// prints a DeleteResponse (exit status 137, as for a process killed by SIGKILL).
enum ShimDelete {
    static func run(_ arguments: ShimArguments) throws -> Never {
        let bundle = arguments.bundle.isEmpty ? FileManager.default.currentDirectoryPath : arguments.bundle
        var arguments = arguments
        if let spec = try? OCIBundle(path: bundle), let sandbox = PodAnnotations.sandbox(of: spec.config) {
            // A pod's container: the sandbox's shim (and VM) are the sandbox's to clean up.
            arguments.group = sandbox
            unlink(bundle + "/vireo-root.overlay")
            unlink(bundle + "/vireo-root.overlay.map")
            RootfsImage.unmount(bundle + "/rootfs")
            var response = ContainerdShimAPI.Containerd_Task_V2_DeleteResponse()
            response.exitStatus = 128 + UInt32(SIGKILL)
            response.exitedAt = .init(date: Date())
            let bytes: [UInt8] = try response.serializedBytes()
            _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            exit(0)
        }
        var pid: UInt32 = 0
        if let text = try? String(contentsOfFile: bundle + "/vireo.pid", encoding: .utf8), let value = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
           value > 1, isVireo(value, bundle: bundle) {
            pid = UInt32(value)
            stop(value)
        }
        try? FileManager.default.removeItem(atPath: bundle + "/vireo.pid")
        if let spec = try? OCIBundle(path: bundle) {
            ContainerCgroup.locate(cgroupsPath: spec.config.linux?.cgroupsPath, id: arguments.id)?.remove()
        }
        RootfsImage.unmount(bundle + "/rootfs")
        unlink(arguments.socketPath)
        var response = ContainerdShimAPI.Containerd_Task_V2_DeleteResponse()
        response.pid = pid
        response.exitStatus = 128 + UInt32(SIGKILL)
        response.exitedAt = .init(date: Date())
        let bytes: [UInt8] = try response.serializedBytes()
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        exit(0)
    }

    /// The pid still names a `vireo run --image` (not a process that reused the number).
    private static func isVireo(_ pid: pid_t, bundle: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        let words = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.count > 1 && words[1] == "run" && words.contains("--image")
    }

    /// Two SIGTERMs stop the VM the vireo way (its run directory removed); SIGKILL to its group after 20 s.
    private static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        usleep(300_000)
        kill(pid, SIGTERM)
        for _ in 0..<200 {
            if kill(pid, 0) != 0 { return }
            usleep(100_000)
        }
        kill(-pid, SIGKILL)
    }
}
