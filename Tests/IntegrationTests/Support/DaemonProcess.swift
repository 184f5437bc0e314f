import Foundation
import Manager
import Testing

/// A real `vireo serve` on a temporary socket and state directory, for end-to-end tests.
/// `stop()` kills the daemon and every VMM it ran, and removes the directory.
final class DaemonProcess: @unchecked Sendable {
    let directory: String
    let socket: String
    let stateDirectory: String
    private(set) var process: GuestProcess
    let client: UnixHTTPClient
    private let extraArguments: [String]
    private static let counter = NSLock()
    nonisolated(unsafe) private static var next = 0

    init(extraArguments: [String] = []) throws {
        let index: Int = DaemonProcess.counter.withLock { DaemonProcess.next += 1; return DaemonProcess.next }
        // Short: the socket path must fit in sun_path.
        directory = "/tmp/vireo-d\(getpid())-\(index)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/api.sock"
        stateDirectory = directory + "/state"
        client = UnixHTTPClient(socketPath: socket)
        self.extraArguments = extraArguments
        process = try DaemonProcess.launch(socket: socket, state: stateDirectory, extra: extraArguments)
        try waitUntilListening()
    }

    private static func launch(socket: String, state: String, extra: [String]) throws -> GuestProcess {
        let roots = extra.contains("--image-root") ? [] : imageRoots(for: (state as NSString).deletingLastPathComponent)
        return try GuestProcess(arguments: ["serve", "--socket", socket, "--state-dir", state] + roots + extra)
    }

    /// `--image-root` flags covering the test's scratch directory and the guest cache (micro-guests,
    /// the test kernel and initramfs), where daemon tests take their kernels and disks from.
    /// A test that passes `--image-root` itself chooses its own roots.
    static func imageRoots(for scratch: String) -> [String] {
        var roots = [scratch]
        let environment = ProcessInfo.processInfo.environment
        for key in ["VIREO_MICRO_DIR", "VIREO_BOOT_TEST_KERNEL_DIR"] {
            if let dir = environment[key], !dir.isEmpty { roots.append(dir) }
        }
        for key in ["VIREO_KERNEL", "VIREO_INITRAMFS", "VIREO_BZIMAGE"] {
            if let file = environment[key], !file.isEmpty { roots.append((file as NSString).deletingLastPathComponent) }
        }
        let cache = NSHomeDirectory() + "/.cache/vireo"
        if FileManager.default.fileExists(atPath: cache) { roots.append(cache) }
        var seen = Set<String>()
        return roots.filter { FileManager.default.fileExists(atPath: $0) && seen.insert($0).inserted }
            .flatMap { ["--image-root", $0] }
    }

    /// Waits for the daemon to answer `GET /info`.
    func waitUntilListening(timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let reply = try? client.send("GET", "/info", timeout: 2), reply.status == 200 { return }
            if !process.process.isRunning { break }
            usleep(20_000)
        }
        throw DaemonTestFailure("the daemon did not start listening: \(process.errorOutput)")
    }

    /// SIGKILLs the daemon (its VMMs keep running) and starts a new one on the same state directory.
    func crashAndRestart() throws {
        kill(process.process.processIdentifier, SIGKILL)
        _ = process.waitForExit(timeout: 10)
        process = try DaemonProcess.launch(socket: socket, state: stateDirectory, extra: extraArguments)
        try waitUntilListening()
    }

    var pid: Int32 { process.process.processIdentifier }

    // MARK: API helpers

    @discardableResult
    func request(_ method: String, _ path: String, json: JSONValue? = nil, raw: [UInt8]? = nil) throws -> HTTPReply {
        if let json { return try client.send(method, path, json: json, timeout: 120) }
        return try client.send(method, path, body: raw, timeout: 120)
    }

    /// POST /vms with the given fields; expects 201.
    @discardableResult
    func create(_ name: String, kernel: String, _ fields: [(key: String, value: JSONValue)] = []) throws -> JSONValue {
        let reply = try request("POST", "/vms", json: .object([("name", .string(name)), ("kernel", .string(kernel))] + fields))
        guard reply.status == 201, let vm = reply.json else {
            throw DaemonTestFailure("create \(name): \(reply.status) \(reply.text)")
        }
        return vm
    }

    /// POST /vms/NAME/ACTION; expects 200 and returns the VM.
    @discardableResult
    func action(_ name: String, _ action: String) throws -> JSONValue {
        let reply = try request("POST", "/vms/\(name)/\(action)")
        guard reply.status == 200, let vm = reply.json else {
            throw DaemonTestFailure("\(action) \(name): \(reply.status) \(reply.text)")
        }
        return vm
    }

    func vm(_ name: String) throws -> JSONValue {
        let reply = try request("GET", "/vms/\(name)")
        guard reply.status == 200, let vm = reply.json else { throw DaemonTestFailure("inspect \(name): \(reply.status) \(reply.text)") }
        return vm
    }

    func list() throws -> [JSONValue] {
        let reply = try request("GET", "/vms")
        guard reply.status == 200, let vms = reply.json?.arrayValue else { throw DaemonTestFailure("list: \(reply.status) \(reply.text)") }
        return vms
    }

    func logs(_ name: String) -> String {
        (try? request("GET", "/vms/\(name)/logs").text) ?? ""
    }

    /// Polls until `condition` holds for the VM (or the timeout passes); returns the last VM seen.
    @discardableResult
    func waitForVM(_ name: String, timeout: Double = 30, _ condition: (JSONValue) -> Bool) -> JSONValue? {
        let deadline = Date().addingTimeInterval(timeout)
        var last: JSONValue?
        while Date() < deadline {
            last = try? vm(name)
            if let last, condition(last) { return last }
            usleep(50_000)
        }
        return last
    }

    /// Polls until the console log contains `text`.
    func waitForLog(_ name: String, _ text: String, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if logs(name).contains(text) { return true }
            usleep(50_000)
        }
        return logs(name).contains(text)
    }

    /// Runs the `vireo` CLI against this daemon; returns (status, stdout, stderr).
    func cli(_ arguments: [String], input: String? = nil, timeout: Double = 60) throws -> (Int32?, String, String) {
        let command = try GuestProcess(arguments: arguments + ["--socket", socket])
        if let input { command.send(input) }
        command.closeInput()
        let status = command.waitForExit(timeout: timeout)
        return (status, command.output, command.errorOutput)
    }

    /// Kills every VMM this state directory has (by the pid files), the daemon, and the files.
    func stop() {
        kill(process.process.processIdentifier, SIGKILL)
        _ = process.waitForExit(timeout: 10)
        let vms = (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory + "/vms")) ?? []
        for name in vms {
            if let text = try? String(contentsOfFile: "\(stateDirectory)/vms/\(name)/vmm.pid", encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                // Only a VMM of ours: its working directory is this VM's directory.
                let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
                if cwd == "\(stateDirectory)/vms/\(name)" { kill(pid, SIGKILL) }
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct DaemonTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension JSONValue {
    var state: String? { self["state"]?.stringValue }
    var pid: Int32? { self["pid"]?.intValue.map { Int32($0) } }
}

/// Daemon tests need KVM and the micro-guests (required in CI).
enum DaemonTestGate {
    static func enabled() throws -> Bool {
        try TestEnvironment.available("DaemonTests", .kvm, .micro("counter"))
    }
}

/// Every daemon test, one at a time: each runs real VMs, and the host has two cores.
@Suite(.enabled { try DaemonTestGate.enabled() }, .serialized)
struct DaemonTests {}

/// A value shared between threads of a test, behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock(); defer { lock.unlock() }
        return body(&value)
    }
    var current: Value { withLock { $0 } }
}
