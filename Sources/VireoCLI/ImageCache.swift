import Foundation
import Images
import Manager
import VMMCommand

/// Where `vireo pull`, `vireo images` and `vireo run --image` keep images: `--state-dir`, else
/// $VIREO_STATE_DIR, else the daemon's state directory as root, else ~/.local/state/vireo.
enum ImageCache {
    static func stateDirectory(_ option: String?) -> String {
        if let option { return option }
        if let fromEnvironment = ProcessInfo.processInfo.environment["VIREO_STATE_DIR"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        if geteuid() == 0 { return DaemonConfiguration.defaultStateDirectory }
        return (ProcessInfo.processInfo.environment["HOME"] ?? "/tmp") + "/.local/state/vireo"
    }

    static func open(_ option: String?) throws -> ImageStore { try ImageStore(stateDirectory: stateDirectory(option)) }

    static func progress(_ line: String) { printError("vireo: \(line)\n") }

    /// "12.3 MiB".
    static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
