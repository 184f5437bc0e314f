#if canImport(Glibc)
import Glibc
#endif

/// Feeds bytes from a file descriptor (the user's terminal, a pipe) into a console device.
///
/// Runs on its own thread; when the device's receive buffer is full it waits briefly and
/// retries, so no typed byte is dropped.
final class ConsoleInput: Sendable {
    private let fd: Int32
    private let deliver: @Sendable (UnsafeRawBufferPointer) -> Int
    private let control: MachineControl
    /// What the reading thread enters its role under.
    private let isolation: IsolationPlan?

    /// `deliver` takes as many bytes as fit and returns that count.
    init(fd: Int32, control: MachineControl, isolation: IsolationPlan?, deliver: @escaping @Sendable (UnsafeRawBufferPointer) -> Int) {
        self.fd = fd
        self.control = control
        self.isolation = isolation
        self.deliver = deliver
    }

    func start() -> OSThread {
        OSThread(name: "vireo-console") { [self] in ThreadRole.deviceIO.enter(under: isolation); pump() }
    }

    private func pump() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while !control.isStopping {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }  // EOF or error: the guest just gets no more input
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                while offset < count && !control.isStopping {
                    let taken = deliver(UnsafeRawBufferPointer(rebasing: bytes[offset..<count]))
                    offset += taken
                    if taken == 0 { usleep(1000) }
                }
            }
        }
    }
}
