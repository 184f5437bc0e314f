import Foundation
import Images

/// The user's terminal for `vireo run --image -t`: its size, and a fully raw mode (no signals from
/// ^C/^Z/^\, which travel as bytes to the guest's terminal) restored afterwards.
final class HostTerminal {
    private var saved = termios()

    /// The size of the terminal on stdout (else stdin), if either is one.
    static func size() -> RunSpec.TerminalSize? {
        for fd in [Int32(1), 0] {
            var size = winsize()
            if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0, size.ws_col > 0 {
                return RunSpec.TerminalSize(rows: size.ws_row, columns: size.ws_col)
            }
        }
        return nil
    }

    /// Puts stdin's terminal in raw mode; nil when stdin is no terminal.
    static func enterRaw() -> HostTerminal? {
        let terminal = HostTerminal()
        guard isatty(0) == 1, tcgetattr(0, &terminal.saved) == 0 else { return nil }
        var raw = terminal.saved
        cfmakeraw(&raw)
        guard tcsetattr(0, TCSANOW, &raw) == 0 else { return nil }
        return terminal
    }

    func restore() { tcsetattr(0, TCSANOW, &saved) }
}
