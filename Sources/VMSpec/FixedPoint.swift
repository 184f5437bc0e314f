/// Seconds (or milliseconds) as text with a fixed number of decimals, without Foundation: the
/// VMM's `-v` timings and both halves of a warm-pool timeline (the daemon's and the VMM's).
/// A negative value keeps its sign (a step measured on another thread can end before the one before it).
package func format3(_ value: Double) -> String { fixedPoint(Int64((value * 1000).rounded()), decimals: 3) }

/// `format3` with six decimals (microseconds of a second).
package func format6(_ value: Double) -> String { fixedPoint(Int64((value * 1e6).rounded()), decimals: 6) }

/// `units` / 10^decimals with exactly `decimals` digits after the point.
func fixedPoint(_ units: Int64, decimals: Int) -> String {
    var scale: UInt64 = 1
    for _ in 0..<decimals { scale *= 10 }
    let magnitude = units.magnitude
    let fraction = String(magnitude % scale)
    return (units < 0 ? "-" : "") + "\(magnitude / scale)." + String(repeating: "0", count: decimals - fraction.count) + fraction
}
