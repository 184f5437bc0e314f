import Foundation

/// The container's terminal (`ctr run -t`, `tty: true`): a host pty pair. The VM's `vireo run
/// --image -t` gets the slave as stdin and stdout, so it reads keys and the window size as from a
/// user's terminal (and puts it in raw mode; the guest's console does the line editing); the shim
/// copies containerd's stdin FIFO to the master and the master to the stdout FIFO. ResizePty sets
/// the master's size and sends vireo SIGWINCH, which forwards the new size to the guest.
final class ShimTerminal: @unchecked Sendable {
    let master: Int32
    /// Closed by `releaseSlave` once the child holds it.
    private(set) var slave: Int32
    private let lock = NSLock()
    private var stopping = false
    private let outputDone = DispatchSemaphore(value: 0)
    /// TIOCSPTLCK = _IOW('T', 0x31, int), TIOCGPTN = _IOR('T', 0x30, unsigned int) (<asm-generic/ioctls.h>).
    static let setLock: UInt = 0x4004_5431
    static let getNumber: UInt = 0x8004_5430

    init() throws {
        // /dev/ptmx and its ioctls (Swift's Glibc has no posix_openpt; devpts needs no grantpt).
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard master >= 0 else { throw ShimError(ShimError.internal, "cannot open a pty (/dev/ptmx): \(String(cString: strerror(errno)))") }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard ioctl(master, ShimTerminal.setLock, &unlock) == 0, ioctl(master, ShimTerminal.getNumber, &number) == 0 else {
            let reason = String(cString: strerror(errno))
            close(master)
            throw ShimError(ShimError.internal, "cannot set up a pty: \(reason)")
        }
        let name = "/dev/pts/\(number)"
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            let reason = String(cString: strerror(errno))
            close(master)
            throw ShimError(ShimError.internal, "cannot open the pty's slave: \(reason)")
        }
        // Raw from the start: bytes containerd forwards before vireo sets the mode are not echoed back.
        var mode = termios()
        if tcgetattr(slave, &mode) == 0 {
            cfmakeraw(&mode)
            tcsetattr(slave, TCSANOW, &mode)
        }
    }

    /// The child has the slave: the shim's copy goes, so the master reads EIO once the VM's processes end.
    func releaseSlave() {
        if slave >= 0 { close(slave) }
        slave = -1
    }

    /// Starts the copies: `input` (stdin FIFO, or -1) to the master, the master to `output`. Both fds
    /// become the terminal's: it closes them when done.
    func copy(input: Int32, output: Int32) {
        Thread.detachNewThread { [self] in
            defer { close(output) }
            var buffer = [UInt8](repeating: 0, count: 32768)
            while true {
                let got = read(master, &buffer, buffer.count)
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { break }  // EIO: every slave fd is closed (the VM ended)
                guard (try? GuestAgent.writeAll(output, Array(buffer[0..<got]))) != nil else { continue }  // reader gone: drain anyway
            }
            outputDone.signal()
        }
        guard input >= 0 else { return }
        Thread.detachNewThread { [self] in
            defer { close(input) }
            var buffer = [UInt8](repeating: 0, count: 32768)
            while !lock.withLock({ stopping }) {
                var wait = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
                guard poll(&wait, 1, 500) != 0 else { continue }
                let got = read(input, &buffer, buffer.count)
                if got < 0 && errno == EINTR { continue }
                if got <= 0 { break }  // containerd closed stdin (CloseIO, or the client went)
                guard (try? GuestAgent.writeAll(master, Array(buffer[0..<got]))) != nil else { break }
            }
        }
    }

    /// The VM has ended: waits (bounded) for the output still in the pty to reach containerd, then
    /// closes the master.
    func finish() {
        lock.withLock { stopping = true }
        releaseSlave()
        _ = outputDone.wait(timeout: .now() + 5)
        close(master)
    }

    /// For a VM that never started (no copies running).
    func closeMaster() { close(master) }

    /// Sets the window size (containerd's ResizePty gives width and height in cells).
    func resize(width: UInt32, height: UInt32) throws {
        guard width > 0, height > 0, width <= 65535, height <= 65535 else {
            throw ShimError(ShimError.invalidArgument, "vireo: a terminal size of \(width)x\(height) is out of range")
        }
        var size = winsize(ws_row: UInt16(height), ws_col: UInt16(width), ws_xpixel: 0, ws_ypixel: 0)
        guard ioctl(master, UInt(TIOCSWINSZ), &size) == 0 else {
            throw ShimError(ShimError.internal, "cannot resize the terminal: \(String(cString: strerror(errno)))")
        }
    }
}
