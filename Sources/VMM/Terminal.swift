#if canImport(Glibc)
import Glibc
#endif

/// Puts the user's terminal in raw mode for the guest console and restores it afterwards.
///
/// ISIG stays on so Ctrl-C still stops the VM (like `qemu -nographic` without its escape key).
/// @unchecked Sendable: Used only by the main thread: `enter` before the VM runs, `restore` after it stopped.
public final class RawTerminal: @unchecked Sendable {
    private let fd: Int32
    private var saved = termios()
    private var active = false

    public init(fd: Int32 = 0) { self.fd = fd }

    /// Enters raw mode if `fd` is a terminal; returns false otherwise.
    @discardableResult
    public func enter() -> Bool {
        guard isatty(fd) == 1, tcgetattr(fd, &saved) == 0 else { return false }
        var raw = saved
        raw.c_iflag &= ~tcflag_t(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON)
        raw.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | IEXTEN)
        raw.c_cflag |= tcflag_t(CS8)
        guard tcsetattr(fd, TCSANOW, &raw) == 0 else { return false }
        active = true
        return true
    }

    /// Restores the saved terminal settings (idempotent).
    public func restore() {
        guard active else { return }
        tcsetattr(fd, TCSANOW, &saved)
        active = false
    }

    deinit { restore() }
}
