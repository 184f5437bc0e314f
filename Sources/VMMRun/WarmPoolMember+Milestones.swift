import VMM
import VMSpec

/// Where a pooled restore's time goes inside the VMM (bench/restore-pool reads it): CLOCK_MONOTONIC
/// moments from the member's receipt of the hand-off to the first guest entry, written to
/// `vmm.log` as one line once the VMM said `up`. Only a warm-pool VMM turns it on; marks are taken
/// on the main thread before any other VMM thread exists.
enum PoolMilestones {
    nonisolated(unsafe) private static var enabled = false
    nonisolated(unsafe) private static var marks: [(String, Double)] = []

    static func now() -> Double { MonotonicClock.now() }

    /// Starts recording with the first moment (e.g. the member's receipt of the hand-off).
    static func start(_ name: String, at moment: Double) {
        enabled = true
        marks = [(name, moment)]
        IsolationPlan.step = { mark($0) }
    }

    /// Records a step that ended at `moment` (another process's, on the same clock), if recording.
    static func record(_ name: String, at moment: Double) {
        guard enabled else { return }
        marks.append((name, moment))
    }

    /// Records a step's end, if recording.
    static func mark(_ name: String) {
        guard enabled else { return }
        marks.append((name, now()))
    }

    /// `vireo: pool: hand-off 1234.567890 s; spec +0.31 ms; …; first guest entry +3.20 ms`.
    static func line(firstEntry: Double) -> String? {
        guard enabled, let first = marks.first else { return nil }
        var previous = first.1
        var parts = ["\(first.0) at CLOCK_MONOTONIC \(format6(first.1)) s"]
        for (name, moment) in marks.dropFirst() + (firstEntry > 0 ? [("first guest entry", firstEntry)] : []) {
            parts.append("\(name) +\(format3((moment - previous) * 1000)) ms")
            previous = moment
        }
        return "vireo: pool: " + parts.joined(separator: "; ") + "\n"
    }
}
