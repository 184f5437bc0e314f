#if canImport(Glibc)
import Glibc
#endif
import VMSpec

/// The daemon's steps of a pooled start, as CLOCK_MONOTONIC moments, sent with the hand-off
/// (`t <step>=<seconds>` lines): the pooled VMM puts them first in its `vireo: pool:` timeline
/// (WarmPoolMember+Milestones), so bench/restore-pool can say where the daemon's part goes.
struct WarmPoolTimeline {
    static let maximumMarks = 12
    private(set) var marks: [(String, Double)] = []

    /// Records the end of step `name` (a fixed label: letters, digits, spaces, commas).
    mutating func mark(_ name: String) {
        guard marks.count < Self.maximumMarks else { return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        marks.append((name, Double(now.tv_sec) + Double(now.tv_nsec) / 1e9))
    }

    /// The lines the hand-off message carries.
    var lines: String {
        marks.map { "t \($0.0)=\(format6($0.1))\n" }.joined()
    }
}
