internal import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the UART's transmitter puts bytes: straight into the sink, or — once `start` ran — into a
/// buffer that a thread of its own hands to the sink a burst at a time.
///
/// A guest prints one byte per THR write, each one an exit; writing each to the terminal and the
/// log on the vCPU thread cost two write(2) calls and a lock per byte. Buffered, a vCPU only copies
/// the byte (and rings a doorbell when the buffer was empty); the output thread writes whatever
/// gathered meanwhile. When the buffer is full (the terminal stopped reading) the vCPU writes
/// the buffer out itself, in order, and waits as it did before: output is never dropped.
final class SerialOutput: @unchecked Sendable {
    static let capacity = 4096

    private let sink: any ConsoleSink
    /// Bytes waiting, at `storage[0..<count]` (count guarded by the lock, storage too).
    private let pending = Mutex<Int>(0)
    private let storage: UnsafeMutableRawBufferPointer
    /// Held while bytes taken from `storage` are written to the sink, so bursts stay in order.
    private let writer = Mutex<Void>(())
    private let scratch: UnsafeMutableRawBufferPointer
    private let doorbell: EventFD?
    private let running = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private var thread = pthread_t()

    init(sink: any ConsoleSink) {
        self.sink = sink
        storage = .allocate(byteCount: SerialOutput.capacity, alignment: 16)
        scratch = .allocate(byteCount: SerialOutput.capacity, alignment: 16)
        doorbell = try? EventFD()
    }

    deinit {
        stop()
        storage.deallocate()
        scratch.deallocate()
    }

    /// One byte from the guest (a vCPU thread, under the UART's lock).
    func put(_ byte: UInt8) {
        guard running.load(ordering: .acquiring), let doorbell else {
            var value = byte
            withUnsafeBytes(of: &value) { sink.consoleOutput($0) }
            return
        }
        while true {
            let (stored, wasEmpty) = pending.withLock { count -> (Bool, Bool) in
                guard count < SerialOutput.capacity else { return (false, false) }
                storage[count] = byte
                count += 1
                return (true, count == 1)
            }
            if stored {
                if wasEmpty { doorbell.signal() }
                return
            }
            drain()  // full: the output thread is behind (a slow terminal); wait with it
        }
    }

    /// Writes out everything buffered so far, on the calling thread.
    func drain() {
        writer.withLock { _ in
            while true {
                let taken = pending.withLock { count -> Int in
                    let taken = count
                    if taken > 0 { scratch.baseAddress!.copyMemory(from: storage.baseAddress!, byteCount: taken) }
                    count = 0
                    return taken
                }
                guard taken > 0 else { return }
                sink.consoleOutput(UnsafeRawBufferPointer(rebasing: scratch[0..<taken]))
            }
        }
    }

    /// Starts the output thread; `threadStart` runs first on it (the VMM's sandbox). Without an
    /// eventfd, or if the thread cannot start, output stays synchronous.
    func start(threadStart: (@Sendable () -> Void)?) {
        guard let doorbell, !running.load(ordering: .relaxed) else { return }
        let started = DeviceThread.start { [unowned self] in
            clinux_set_thread_name("vireo-serial")
            threadStart?()
            while !stopping.load(ordering: .acquiring) {
                doorbell.wait(milliseconds: -1)
                drain()
            }
        }
        guard case .success(let handle) = started else { return }
        thread = handle
        running.store(true, ordering: .releasing)
    }

    /// Stops the output thread and writes out what is left; later bytes go straight to the sink.
    func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing), let doorbell else { return }
        stopping.store(true, ordering: .releasing)
        doorbell.signal()
        pthread_join(thread, nil)
        drain()
    }
}
