import Foundation
import Images

/// A program (ctr) on a pty the test holds, as on a user's terminal: the pty is its controlling
/// terminal (a session of its own), so resizing it sends the program SIGWINCH as a terminal
/// emulator's resize would. The test reads what the program writes and types into it.
final class TerminalSession: @unchecked Sendable {
    private let master: Int32
    let pid: pid_t
    private let lock = NSLock()
    private var output: [UInt8] = []
    private var status: Int32?

    init(_ arguments: [String], environment: [String: String], rows: UInt16, columns: UInt16) throws {
        // /dev/ptmx with TIOCSPTLCK (unlock) and TIOCGPTN (its number): Swift's Glibc has no posix_openpt.
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard master >= 0, ioctl(master, UInt(0x4004_5431), &unlock) == 0, ioctl(master, UInt(0x8004_5430), &number) == 0 else {
            throw ImageError("cannot open a pty for the test")
        }
        let name = "/dev/pts/\(number)"
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &size)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // glibc runs setsid before the file actions: opening the slave then makes it the controlling terminal.
        posix_spawn_file_actions_addopen(&actions, 0, name, O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, 0, 1)
        posix_spawn_file_actions_adddup2(&actions, 0, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, 0x80)  // POSIX_SPAWN_SETSID (glibc; not imported into Swift)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw ImageError("cannot start \(arguments[0]): \(String(cString: strerror(result)))") }
        pid = child
        Thread.detachNewThread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let got = read(master, &buffer, buffer.count)
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { break }
                lock.withLock { if output.count < 1 << 20 { output += buffer[0..<got] } }
            }
        }
    }

    /// Everything the program wrote so far.
    var text: String { lock.withLock { String(decoding: output, as: UTF8.self) } }

    /// Waits (bounded) until the output matches `condition`.
    func waitFor(_ seconds: Double, _ condition: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition(text) { return true }
            usleep(100_000)
        }
        return condition(text)
    }

    /// Types `word` and Enter until the program answers `got-WORD EXPECTED` (a script that echoes
    /// each line with `stty size`), at most 20 times: what was typed before the program read its
    /// terminal may be lost. True when it answered.
    func typeUntil(_ expected: String, _ word: String) -> Bool {
        for _ in 0..<20 {
            type(word + "\r")
            if waitFor(3, { $0.contains("got-\(word) \(expected)") }) { return true }
        }
        return false
    }

    func type(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { write(master, $0.baseAddress, $0.count) } }

    /// Resizes the terminal: the kernel sends its foreground group (the program) SIGWINCH.
    func resize(rows: UInt16, columns: UInt16) {
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &size)
    }

    /// The program's exit status once it has exited (bounded wait; SIGKILL after it), 128+N for signal N.
    func wait(_ seconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(seconds)
        var raw: Int32 = 0
        while waitpid(pid, &raw, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &raw, 0)
                break
            }
            usleep(100_000)
        }
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }

    deinit { close(master) }
}
