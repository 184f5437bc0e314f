// The lifecycle every device takes part in for a consistent snapshot (after Cloud Hypervisor's
// Pausable/Snapshottable split): vCPUs park first, then each device pauses, then every device and
// vCPU saves, then guest memory is written, then everything resumes.

/// A device that can stop taking work and later continue exactly where it stopped.
public protocol PausableDevice: AnyObject {
    /// Stops taking new requests; returns once in-flight work finished or is parked (the acknowledgement).
    func pauseDevice()
    /// Continues, servicing whatever arrived while paused.
    func resumeDevice()
}

/// A device whose own state (registers, held buffers, tables, configuration) goes into a snapshot.
public protocol SnapshottableDevice: AnyObject {
    /// The device's state as bytes; called only while the device (and every vCPU) is paused.
    func saveState() -> [UInt8]
    /// Loads what `saveState` wrote; every value is checked (the file is untrusted input).
    func restoreState(_ bytes: [UInt8]) throws(StateError)
}

// Legacy devices are touched only by vCPU threads, so parked vCPUs already pause them.
extension Serial8250: SnapshottableDevice {}
extension I8042: SnapshottableDevice {}
extension CMOSRTC: SnapshottableDevice {}
