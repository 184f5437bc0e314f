import Foundation
import Images

/// Debian's containerd on private root/state directories and sockets under one test directory, with
/// the built `containerd-shim-vireo-v2` first on its PATH, and `ctr` pointed at it.
final class ContainerdDaemon {
    let directory: String
    let environment: [String: String]
    private var process: Process?
    var socket: String { directory + "/containerd.sock" }
    var log: String { directory + "/containerd.log" }

    init(directory: String, environment: [String: String]) throws {
        self.directory = directory
        self.environment = environment
        let config = """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            # Only what ctr needs: no CRI (its stream server, CNI), no snapshotters this host lacks.
            disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                                "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                                "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                                "io.containerd.internal.v1.tracing"]
            [grpc]
              address = "\(directory)/containerd.sock"
            [ttrpc]
              address = "\(directory)/containerd.sock.ttrpc"
            [debug]
              address = "\(directory)/debug.sock"
              level = "debug"
            [metrics]
              address = ""
            # What a node with CRI uses (docs/containerd.md); ctr names the runtime with --runtime.
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vireo]
              runtime_type = "io.containerd.vireo.v2"
            """
        try config.write(toFile: directory + "/config.toml", atomically: true, encoding: .utf8)
        try start()
    }

    /// Starts containerd and waits (bounded) until `ctr version` answers.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/containerd")
        process.arguments = ["--config", directory + "/config.toml"]
        process.environment = environment
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if (try? ctr(["version"], timeout: 10).status) == 0 { return }
            guard process.isRunning else { throw ImageError("containerd exited at start; its log: \(log)") }
            usleep(200_000)
        }
        throw ImageError("containerd did not answer within 60 s; its log: \(log)")
    }

    /// SIGTERM, then waits (bounded) for containerd to exit. Its shims keep running.
    func stop() {
        guard let process, process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        self.process = nil
    }

    struct Result {
        let status: Int32
        let output: String
        let errors: String
        let seconds: Double
    }

    /// Runs `ctr --address SOCKET ARGS` with stdin from /dev/null; a run over `timeout` is killed.
    func ctr(_ arguments: [String], timeout: Double = 120) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ctr")
        process.arguments = ["--address", socket] + arguments
        process.environment = environment
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch("out")))
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch("err")))
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        let started = Date()
        try process.run()
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        let seconds = Date().timeIntervalSince(started)
        try? output.close()
        try? errors.close()
        return Result(status: process.terminationStatus, output: (try? String(contentsOfFile: scratch("out"), encoding: .utf8)) ?? "",
                      errors: (try? String(contentsOfFile: scratch("err"), encoding: .utf8)) ?? "", seconds: seconds)
    }

    private func scratch(_ name: String) -> String {
        let path = "\(directory)/ctr.\(name)"
        FileManager.default.createFile(atPath: path, contents: nil)
        return path
    }

    /// The containerd log's last lines (for failure messages).
    var logTail: String {
        String(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(4000))
    }

    /// The pids of processes (other than containerd) whose command line mentions `text`.
    static func processes(mentioning text: String, except: Int32?) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard pid != getpid(), pid != except, let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
        }
    }

    var pid: Int32? { process?.processIdentifier }

    /// Mount points under `text` (from /proc/self/mountinfo).
    static func mounts(under text: String) -> [String] {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(text) ? String(fields[4]) : nil
        }
    }
}
