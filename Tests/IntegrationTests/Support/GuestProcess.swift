import Foundation
import KVM
import VireoTestSupport

/// A `vireo` child process with its console captured, for end-to-end tests.
final class GuestProcess: @unchecked Sendable {
    let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let lock = NSLock()
    private var stdoutData = Data()
    private var stderrData = Data()

    /// Runs `vireo` with `arguments` (or `executable`, e.g. a wrapper that runs vireo itself).
    init(arguments: [String], environment: [String: String] = [:], executable: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable ?? TestEnvironment.vireoBinary)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        stdoutPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock(); self.stdoutData.append(data); self.lock.unlock()
        }
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock(); self.stderrData.append(data); self.lock.unlock()
        }
        try process.run()
    }

    var output: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: stdoutData, as: UTF8.self)
    }

    var errorOutput: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: stderrData, as: UTF8.self)
    }

    /// Types `text` into the guest's serial console.
    func send(_ text: String) {
        stdinPipe.fileHandleForWriting.write(Data(text.utf8))
    }

    func closeInput() {
        try? stdinPipe.fileHandleForWriting.close()
    }

    /// Waits until stdout contains `text`; false on timeout or if the process exited first.
    @discardableResult
    func waitForOutput(_ text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { usleep(100_000); return output.contains(text) }
            usleep(20_000)
        }
        return output.contains(text)
    }

    /// Waits until stdout holds a whole line (newline-terminated) starting with `prefix` and
    /// returns it: the guest writes a line a byte per exit, so a line still arriving is not taken.
    func waitForLine(_ prefix: String, timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            let text = output
            if let start = text.range(of: prefix), let end = text[start.lowerBound...].firstIndex(where: \.isNewline) {
                return String(text[start.lowerBound..<end])
            }
            if !process.isRunning { return nil }
            usleep(20_000)
        } while Date() < deadline
        return nil
    }

    /// Waits for the process to exit; returns its status, or nil after killing it on timeout.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            process.terminate()
            usleep(500_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        usleep(100_000)  // let the pipe handlers drain
        return process.terminationStatus
    }

    /// Kills the process if still running (test cleanup).
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Paths and facts the integration tests need, from the environment set by scripts/test.
enum TestEnvironment {
    /// An empty scratch directory `<tmp>/<prefix>-<pid>` (whatever was there is removed first).
    static func freshDirectory(_ prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(getpid())")
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The `vireo` binary next to the test bundle (swift build puts both in one directory).
    static var vireoBinary: String {
        if let path = ProcessInfo.processInfo.environment["VIREO_BIN"] { return path }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("vireo").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "vireo"
    }

    static let host = HostKind.detect()
    static var hasKVM: Bool { host != .none && access("/dev/kvm", R_OK | W_OK) == 0 }

    /// Guests are required in CI (scripts/test sets VIREO_REQUIRE_GUESTS=1): a missing one fails there.
    static var requireGuests: Bool { Prerequisites.strict }

    /// What an integration test needs from the host.
    enum Need {
        case kvm, root, kernel, initramfs, tun
        case micro(String)
        case executable(String)

        /// Why it is missing, or nil when present.
        var missing: String? {
            switch self {
            case .kvm: return TestEnvironment.hasKVM ? nil : "no usable /dev/kvm (host kind \(TestEnvironment.host))"
            case .root: return getuid() == 0 ? nil : "not root"
            case .kernel: return TestEnvironment.path("VIREO_KERNEL") != nil ? nil : "VIREO_KERNEL (run scripts/test)"
            case .initramfs: return TestEnvironment.path("VIREO_INITRAMFS") != nil ? nil : "VIREO_INITRAMFS (run scripts/test)"
            case .tun: return access("/dev/net/tun", R_OK | W_OK) == 0 ? nil : "no /dev/net/tun"
            case .micro(let name): return TestEnvironment.micro(name) != nil ? nil : "micro-guest \(name) (VIREO_MICRO_DIR; run scripts/test)"
            case .executable(let path): return FileManager.default.isExecutableFile(atPath: path) ? nil : "\(path) not installed"
            }
        }
    }

    /// For `.enabled { try TestEnvironment.available("…", .kvm, …) }`: true when every need is met;
    /// otherwise the test fails on strict runs (CI, scripts/test) and is skipped, saying why, locally.
    static func available(_ test: String, _ needs: Need...) throws -> Bool {
        try Prerequisites.check(needs.compactMap(\.missing), test: test)
    }

    static func path(_ variable: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty,
              FileManager.default.fileExists(atPath: value) else { return nil }
        return value
    }

    static func micro(_ name: String) -> String? {
        guard let dir = path("VIREO_MICRO_DIR") else { return nil }
        let file = URL(fileURLWithPath: dir).appendingPathComponent("\(name).elf").path
        return FileManager.default.fileExists(atPath: file) ? file : nil
    }

    static func log(_ message: String) {
        FileHandle.standardError.write(Data("[integration] \(message)\n".utf8))
    }
}
