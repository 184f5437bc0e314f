import Devices
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the guest's serial console goes: the user's terminal and/or a log file.
///
/// It also watches for the Linux panic banner so a panic followed by a reset is reported as a
/// panic rather than a clean reboot.
public final class ConsoleOutput: ConsoleSink, @unchecked Sendable {
    private struct State {
        var matched = 0
        var sawPanic = false
    }

    private let terminalFD: Int32?
    private let logFD: Int32?
    private let state = Mutex(State())
    private static let panicBanner = Array("Kernel panic - not syncing".utf8)

    /// `terminalFD` is usually 1 (stdout); `logPath` is opened for append and created if missing.
    public init(terminalFD: Int32?, logPath: String?) throws(VMMError) {
        self.terminalFD = terminalFD
        if let logPath {
            let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .file(path: logPath, what: "cannot open the console log", errno: errno) }
            logFD = fd
        } else {
            logFD = nil
        }
    }

    deinit { if let logFD { close(logFD) } }

    /// True once the guest printed the kernel panic banner.
    public var sawPanic: Bool { state.withLock { $0.sawPanic } }

    public func consoleOutput(_ bytes: UnsafeRawBufferPointer) {
        state.withLock { state in
            for byte in bytes where !state.sawPanic {
                let banner = ConsoleOutput.panicBanner
                if byte == banner[state.matched] {
                    state.matched += 1
                    if state.matched == banner.count { state.sawPanic = true }
                } else {
                    state.matched = byte == banner[0] ? 1 : 0
                }
            }
        }
        if let terminalFD { ConsoleOutput.writeAll(terminalFD, bytes) }
        if let logFD { ConsoleOutput.writeAll(logFD, bytes) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return  // a closed terminal must not stop the VM
            }
            offset += written
        }
    }
}
