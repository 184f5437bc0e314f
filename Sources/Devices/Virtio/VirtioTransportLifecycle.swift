// Pause and resume of one virtio device. Queue and event work runs under the `engine` lock, so
// taking that lock to set `paused` waits for the request in progress to finish: after
// `pauseDevice` returns no ring, used index or device table changes until `resumeDevice`.
// Notifications that arrive meanwhile are recorded, not lost, and serviced by the worker on resume.

extension VirtioMMIOTransport: PausableDevice, SnapshottableDevice {
    public func pauseDevice() {
        engine.withLock { $0.paused = true }
    }

    public func resumeDevice() {
        engine.withLock { $0.paused = false }
        resumeNotifier.signal()  // the worker (not this thread) services what was deferred
    }

    /// Whether the device is paused (for status and tests).
    public var isPaused: Bool { engine.withLock { $0.paused } }

    /// Services the queues and event sources that were notified while the device was paused.
    func serviceDeferred() {
        let (queues, events) = engine.withLock { e -> (UInt64, UInt64) in
            guard !e.paused else { return (0, 0) }
            defer { e.deferredQueues = 0; e.deferredEvents = 0 }
            return (e.deferredQueues, e.deferredEvents)
        }
        for index in 0..<64 where queues & (1 << UInt64(index)) != 0 { serviceQueue(index) }
        for source in 0..<64 where events & (1 << UInt64(source)) != 0 { serviceEvent(source) }
    }
}
