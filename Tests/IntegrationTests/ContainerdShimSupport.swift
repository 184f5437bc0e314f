import Foundation
import Images

/// Debian's containerd on private root/state directories and sockets under one test directory, with
/// the built `containerd-shim-vireo-v2` first on its PATH, and `ctr` pointed at it.
final class ContainerdDaemon {
    let directory: String
    let environment: [String: String]
    /// containerd's pid while it runs.
    private(set) var pid: Int32?
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

    /// Starts containerd and waits (bounded) until `ctr version` answers. posix_spawn and waitpid,
    /// not Foundation's Process: its exit was seen to go unnoticed here once ctr runs had come and gone.
    func start() throws {
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw ImageError("cannot open \(log)") }
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        // Nothing else of the test process: a pipe another test's subprocess (gzip for an image)
        // writes would otherwise stay open in containerd, and its reader would wait for its EOF
        // until containerd ended (seen with two of these tests running at once).
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {  // glibc 2.34+; RTLD_DEFAULT is null
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        }
        let arguments: [String] = ["/usr/bin/containerd", "--config", directory + "/config.toml"]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, "/usr/bin/containerd", &actions, nil, argv, envp)
        guard result == 0 else { throw ImageError("cannot start containerd: \(String(cString: strerror(result)))") }
        pid = child
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if (try? ctr(["version"], timeout: 10).status) == 0 { return }
            guard running else { throw ImageError("containerd exited at start; its log: \(log)") }
            usleep(200_000)
        }
        throw ImageError("containerd did not answer within 60 s; its log: \(log)")
    }

    /// Whether containerd still runs (reaps it when it has exited).
    private var running: Bool {
        guard let pid else { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid || (result < 0 && errno == ECHILD) {
            self.pid = nil
            return false
        }
        return true
    }

    /// SIGTERM, then waits (bounded) for containerd to exit. Its shims keep running.
    func stop() {
        guard let pid else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while running && Date() < deadline { usleep(100_000) }
        if running {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            self.pid = nil
        }
    }

    struct Result {
        let status: Int32
        let output: String
        let errors: String
        let seconds: Double
    }

    /// Runs `ctr --address SOCKET ARGS` with stdin from /dev/null (or `input`); a run over `timeout` is killed.
    func ctr(_ arguments: [String], timeout: Double = 120, input: String? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ctr")
        process.arguments = ["--address", socket] + arguments
        process.environment = environment
        let outputPath = scratch("out"), errorPath = scratch("err")
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        process.standardOutput = output
        process.standardError = errors
        if let input {
            let inputPath = scratch("in")
            try input.write(toFile: inputPath, atomically: false, encoding: .utf8)
            process.standardInput = FileHandle(forReadingAtPath: inputPath)
        } else {
            process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        }
        let started = Date()
        try process.run()
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        let seconds = Date().timeIntervalSince(started)
        try? output.close()
        try? errors.close()
        return Result(status: process.terminationStatus, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
                      errors: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "", seconds: seconds)
    }

    /// An empty file for one ctr run's output (ctr runs one at a time).
    private func scratch(_ name: String) -> String {
        let path = "\(directory)/ctr.\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
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

    /// Mount points under `text` (from /proc/self/mountinfo).
    static func mounts(under text: String) -> [String] {
        let info = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return info.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].hasPrefix(text) ? String(fields[4]) : nil
        }
    }
}

/// A raw client of the shim's ttrpc socket, for frames containerd would never send.
enum RawShimSocket {
    static func connect(_ path: String) -> Int32? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < 108 else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (index, byte) in bytes.enumerated() { raw[index] = byte } }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { close(fd); return nil }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// A frame header: length, stream id (big-endian), type, flags.
    static func header(length: UInt32, stream: UInt32, type: UInt8) -> [UInt8] {
        [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff),
         UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff), type, 0]
    }

    /// Up to `count` bytes (fewer at end of stream or on the timeout).
    static func read(_ fd: Int32, _ count: Int) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return Array(buffer[0..<got])
    }
}

/// What the test reads of a container's host processes: descendants, identity, namespaces, cgroups.
enum HostProcesses {
    /// `pid`'s descendants (children first), from /proc's PPid lines.
    static func descendants(of pid: Int32) -> [Int32] {
        var parents: [Int32: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry), let ppid = field("PPid:", of: child).flatMap({ Int32($0) }) else { continue }
            parents[child] = ppid
        }
        var found: [Int32] = []
        var frontier = [pid]
        while let next = frontier.popLast() {
            let children = parents.filter { $0.value == next }.map(\.key)
            found += children
            frontier += children
        }
        return found
    }

    /// The first value of a /proc/PID/status line ("Uid:" → the real uid).
    static func field(_ name: String, of pid: Int32) -> String? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.map(String.init)
    }

    static func mountNamespace(_ pid: Int32) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt") }

    /// The directory of `pid`'s cgroup holding `controller` (v1), or its v2 cgroup when no v1
    /// hierarchy has it.
    static func cgroupDirectory(of pid: Int32, controller: String) -> String? {
        guard let lines = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        for line in lines.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2).map(String.init)
            guard parts.count == 3, parts[1].split(separator: ",").contains(Substring(controller)) else { continue }
            for mount in mounts.split(separator: "\n") {
                let fields = mount.split(separator: " ")
                if fields.count >= 4, fields[2] == "cgroup", fields[3].split(separator: ",").contains(Substring(controller)) {
                    return String(fields[1]) + parts[2]
                }
            }
        }
        for line in lines.split(separator: "\n") where line.hasPrefix("0::") {
            for mount in mounts.split(separator: "\n") {
                let fields = mount.split(separator: " ")
                if fields.count >= 3, fields[2] == "cgroup2" { return String(fields[1]) + line.dropFirst(3) }
            }
        }
        return nil
    }
}

/// Hand-encoded protobuf for requests `ctr` cannot send (ctr 1.6 has no `task update`).
enum RawProtobuf {
    static func varint(_ value: Int) -> [UInt8] {
        var value = UInt64(value)
        var bytes: [UInt8] = []
        while value >= 0x80 { bytes.append(UInt8(value & 0x7f) | 0x80); value >>= 7 }
        return bytes + [UInt8(value)]
    }

    /// A length-delimited field.
    static func field(_ number: Int, _ bytes: [UInt8]) -> [UInt8] { varint(number << 3 | 2) + varint(bytes.count) + bytes }

    /// A ttrpc Request frame for containerd.task.v2.Task/METHOD.
    static func taskRequest(_ method: String, _ payload: [UInt8], stream: UInt32) -> [UInt8] {
        let request = field(1, Array("containerd.task.v2.Task".utf8)) + field(2, Array(method.utf8)) + field(3, payload)
        return RawShimSocket.header(length: UInt32(request.count), stream: stream, type: 1) + request
    }
}
