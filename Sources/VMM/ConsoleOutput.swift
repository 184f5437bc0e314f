import Devices
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the guest's serial console goes: the user's terminal, a size-bounded log file, and any
/// clients attached through the control socket.
///
/// It also watches for the Linux panic banner so a panic followed by a reset is reported as a
/// panic rather than a clean reboot.
/// @unchecked Sendable: `rotator` is set once by `startRotator` on the main thread before the vCPUs run; everything else writers share sits in the `state` Mutex.
public final class ConsoleOutput: ConsoleSink, @unchecked Sendable {
    private struct State {
        var matched = 0
        var sawPanic = false
        var logFD: Int32 = -1
        var logBytes: UInt64 = 0
        var attached: [Int32] = []
        /// Set when the log passed its limit, cleared by the rotator once the new file is open.
        var rotationRequested = false
    }

    private let terminalFD: Int32?
    private let logPath: String?
    private let logLimit: UInt64?
    private let state = Mutex(State())
    /// Posted by the writer (a vCPU thread) when the log is full: the rotator thread, not the vCPU,
    /// renames and re-opens, so the vCPU seccomp role needs neither openat nor rename.
    private let rotationWanted = Wakeup()
    private var rotator: OSThread?
    private static let panicBanner = Array("Kernel panic - not syncing".utf8)

    /// `terminalFD` is usually 1 (stdout); `logPath` is opened for append and created if missing;
    /// past `logLimit` bytes the log is rotated to `<logPath>.1` (one old generation is kept).
    public init(terminalFD: Int32?, logPath: String?, logLimit: UInt64? = nil) throws(VMMError) {
        self.terminalFD = terminalFD
        self.logPath = logPath
        self.logLimit = logLimit
        if let logPath {
            // Never through a link, never a FIFO: the log's directory may belong to the VM's user.
            let fd: Int32
            switch CheckedOpen.open(logPath, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644, noFollow: true) {
            case let .success(opened): fd = opened
            case let .failure(.system(error)): throw .file(path: logPath, what: "cannot open the console log", errno: error)
            case let .failure(refusal): throw .invalidConfiguration("console log \(logPath) \(refusal)")
            }
            var info = stat()
            fstat(fd, &info)
            state.withLock { $0.logFD = fd; $0.logBytes = UInt64(max(0, info.st_size)) }
        }
    }

    /// Starts the rotator thread when the log is bounded. Called by `Machine.run` on the main thread
    /// after isolation is in place, so the thread inherits its control filter and CPU affinity.
    func startRotator() {
        guard logPath != nil, logLimit != nil, rotator == nil else { return }
        rotator = OSThread(name: "vireo-log-rotate") { [weak self] in
            while let self {
                self.rotationWanted.wait(seconds: 3600)
                self.state.withLock { if $0.rotationRequested { self.rotate(&$0) } }
            }
        }
    }

    deinit {
        state.withLock { if $0.logFD >= 0 { close($0.logFD) } }
    }

    /// True once the guest printed the kernel panic banner.
    public var sawPanic: Bool { state.withLock { $0.sawPanic } }

    /// Streams console output to `fd` too (a control-socket client) until it fails or is detached.
    func attach(_ fd: Int32) { state.withLock { $0.attached.append(fd) } }

    func detach(_ fd: Int32) { state.withLock { $0.attached.removeAll { $0 == fd } } }

    public func consoleOutput(_ bytes: UnsafeRawBufferPointer) {
        if let terminalFD { ConsoleOutput.writeAll(terminalFD, bytes) }
        state.withLock { state in
            scanForPanic(bytes, &state)
            if state.logFD >= 0 {
                ConsoleOutput.writeAll(state.logFD, bytes)
                state.logBytes += UInt64(bytes.count)
                if let logLimit, state.logBytes > logLimit, !state.rotationRequested {
                    state.rotationRequested = true
                    rotationWanted.post()
                }
            }
            // A client that cannot take output (gone, or not reading) is dropped, never waited for.
            state.attached.removeAll { !ConsoleOutput.writeAll($0, bytes, nonBlocking: true) }
        }
    }

    private func scanForPanic(_ bytes: UnsafeRawBufferPointer, _ state: inout State) {
        let banner = ConsoleOutput.panicBanner
        for byte in bytes where !state.sawPanic {
            if byte == banner[state.matched] {
                state.matched += 1
                if state.matched == banner.count { state.sawPanic = true }
            } else {
                state.matched = byte == banner[0] ? 1 : 0
            }
        }
    }

    private func rotate(_ state: inout State) {
        guard let logPath else { return }
        close(state.logFD)
        rename(logPath, logPath + ".1")
        state.logFD = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o644)
        state.logBytes = 0
        state.rotationRequested = false
    }

    /// Writes everything; returns false when the descriptor failed (closed peer, full and non-blocking).
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, nonBlocking: Bool = false) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = nonBlocking
                ? send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                : write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR || (!nonBlocking && errno == EAGAIN) { continue }
                return false  // a closed terminal must not stop the VM
            }
            offset += written
        }
        return true
    }
}
