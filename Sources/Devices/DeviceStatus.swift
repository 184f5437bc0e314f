import VMSpec

/// How a device's status sits under the control socket's `devices` object.
public enum StatusGrouping: Sendable {
    /// One object under the device's key: `"rng": {…}`.
    case single
    /// One object per device, collected in an array under the key, each with its slot name: `"net": [{…}]`.
    case list
    /// Only how many such devices there are: `"blk": 2`.
    case count
}

/// A device that describes its own counters for `status` (the VMM adds `active`, which the
/// transport knows), so that nothing has to know each device's type to report on it.
public protocol StatusReporting: AnyObject {
    static var statusKey: String { get }
    static var statusGrouping: StatusGrouping { get }
    /// The device's counters; may also ask the driver for fresh numbers for the next call.
    func statusFields() -> [(key: String, value: JSONValue)]
}

extension StatusReporting {
    public static var statusGrouping: StatusGrouping { .single }
    public func statusFields() -> [(key: String, value: JSONValue)] { [] }
}

/// A counter as JSON (counters never reach 2^63).
@inline(__always)
func counter<T: BinaryInteger>(_ value: T) -> JSONValue { .int(Int64(clamping: value)) }

extension VirtioRNG: StatusReporting {
    public static var statusKey: String { "rng" }
    public func statusFields() -> [(key: String, value: JSONValue)] { [("bytes", counter(bytesServed))] }
}

extension VirtioNet: StatusReporting {
    public static var statusKey: String { "net" }
    public static var statusGrouping: StatusGrouping { .list }
    public func statusFields() -> [(key: String, value: JSONValue)] {
        let s = statistics
        let address = mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
        return [("mac", .string(address)), ("rx_packets", counter(s.rxPackets)), ("rx_bytes", counter(s.rxBytes)),
                ("tx_packets", counter(s.txPackets)), ("tx_bytes", counter(s.txBytes)), ("rx_dropped", counter(s.rxDropped)),
                ("tx_dropped", counter(s.txDropped)), ("rx_waits", counter(s.rxWaits)), ("tx_waits", counter(s.txWaits)),
                ("backend_closed", .bool(s.backendClosed))]
    }
}

extension VirtioVsock: StatusReporting {
    public static var statusKey: String { "vsock" }
    public func statusFields() -> [(key: String, value: JSONValue)] {
        let s = statistics
        return [("cid", counter(guestCID)), ("connections", counter(s.connections)), ("host_initiated", counter(s.hostInitiated)),
                ("guest_initiated", counter(s.guestInitiated)), ("resets_sent", counter(s.resetsSent)),
                ("resets_received", counter(s.resetsReceived)), ("bytes_from_guest", counter(s.bytesFromGuest)),
                ("bytes_to_guest", counter(s.bytesToGuest)), ("dropped", counter(s.dropped))]
    }
}

extension VirtioBalloon: StatusReporting {
    public static var statusKey: String { "balloon" }
    /// Also asks the driver for fresh memory statistics for the next call.
    public func statusFields() -> [(key: String, value: JSONValue)] {
        let s = statistics
        let page = VirtioBalloon.pageSize
        let guest = s.guestStatistics.sorted { $0.key < $1.key }.map { tag, value in
            (key: BalloonStatistics.tagNames[tag] ?? "tag_\(tag)", value: counter(value))
        }
        requestStatistics()
        return [("target_mib", counter((UInt64(s.targetPages) * page) >> 20)), ("target_pages", counter(s.targetPages)),
                ("actual_pages", counter(s.actualPages)), ("actual_mib", counter((UInt64(s.actualPages) * page) >> 20)),
                ("inflated_pages", counter(s.inflatedPages)), ("released_pages", counter(s.releasedPages)),
                ("stats_updates", counter(s.statisticsUpdates)), ("stats", .object(guest))]
    }
}

extension VirtioConsole: StatusReporting {
    public static var statusKey: String { "console" }
    public func statusFields() -> [(key: String, value: JSONValue)] {
        let s = statistics
        return [("bytes_out", counter(s.bytesOut)), ("bytes_in", counter(s.bytesIn)), ("bytes_dropped", counter(s.bytesDropped))]
    }
}

extension VirtioBlock: StatusReporting {
    public static var statusKey: String { "blk" }
    public static var statusGrouping: StatusGrouping { .count }
}
