import Devices
import Glibc
import Synchronization

/// A console sink like the VMM's: a lock, then a write to the terminal and one to the log (both
/// /dev/null here), per call.
final class NullConsole: ConsoleSink, @unchecked Sendable {
    private let fd = open("/dev/null", O_WRONLY | O_CLOEXEC)
    private let lock = Mutex(0)
    func consoleOutput(_ bytes: UnsafeRawBufferPointer) {
        lock.withLock { written in
            _ = write(fd, bytes.baseAddress, bytes.count)
            _ = write(fd, bytes.baseAddress, bytes.count)
            written += bytes.count
        }
    }
    deinit { close(fd) }
}

/// An interrupt line nobody listens to.
final class IgnoredLine: InterruptLine {
    func setLevel(_ high: Bool) {}
}

/// COM1 transmit as Linux's polled console drives it (IER 0: LSR read, THR write, per byte), with
/// the sink called per byte on this thread (`outputThread` false, the path before issue 16) or
/// fed through the UART's output thread. Measures bytes per CPU-second of this (the vCPU's) thread.
struct SerialBench {
    let outputThread: Bool

    func run(seconds: Double) -> Measurement {
        let serial = Serial8250(interrupt: IgnoredLine(), sink: NullConsole())
        if outputThread { serial.startOutputThread() }
        defer { serial.stopOutputThread() }
        let line = Array("[    1.234567] virtio_blk virtio0: [vda] 32768 512-byte logical blocks\n".utf8)
        var status: UInt8 = 0, bytes = 0
        let clock = Stopwatch()
        repeat {
            for byte in line {
                withUnsafeMutableBytes(of: &status) { serial.read(offset: 5, into: $0) }  // LSR: THRE
                var value = byte
                withUnsafeBytes(of: &value) { serial.write(offset: 0, from: $0) }
            }
            bytes += line.count
        } while clock.seconds < seconds
        return Measurement(operations: bytes, bytes: bytes, seconds: clock.seconds)
    }
}
