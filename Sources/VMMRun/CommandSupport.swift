#if canImport(Glibc)
import Glibc
#endif

/// The version `vireo version` prints.
public let vireoVersion = "0.1.0"

/// Carries a VM's exit status out of `run()` without ArgumentParser treating it as an error message.
package struct VMExit: Error {
    package let code: Int32
    package init(code: Int32) { self.code = code }
}

/// Bad user input: reported as one line, exit status 2.
package struct UsageError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Writes a message to stderr unbuffered (stdio's `stderr` global is not concurrency-safe in Swift 6).
package func printError(_ message: String) {
    var text = message
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

/// Formats seconds with three decimals without Foundation.
package func format3(_ value: Double) -> String { fixedPoint(Int64((value * 1000).rounded()), decimals: 3) }

/// Formats seconds with six decimals (microseconds) without Foundation.
package func format6(_ value: Double) -> String { fixedPoint(Int64((value * 1e6).rounded()), decimals: 6) }

/// `units` / 10^decimals with exactly `decimals` digits after the point; negative values keep
/// their sign (a step measured across threads can end before the one before it).
func fixedPoint(_ units: Int64, decimals: Int) -> String {
    var scale: UInt64 = 1
    for _ in 0..<decimals { scale *= 10 }
    let magnitude = units.magnitude
    let fraction = String(magnitude % scale)
    return (units < 0 ? "-" : "") + "\(magnitude / scale)." + String(repeating: "0", count: decimals - fraction.count) + fraction
}
