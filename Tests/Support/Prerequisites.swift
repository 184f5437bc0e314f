#if canImport(Glibc)
import Glibc
#endif

/// Decides whether a test whose prerequisites may be missing runs, for `.enabled { … }` traits.
///
/// Strict runs — CI (`CI=true`) and `scripts/test` (`VIREO_REQUIRE_GUESTS=1`) — never skip: a
/// missing prerequisite throws, and Swift Testing records the test as failed with the reason.
/// A plain local `swift test` skips such a test and prints why on stderr.
public enum Prerequisites {
    public static var strict: Bool {
        environment("CI") == "true" || environment("VIREO_REQUIRE_GUESTS") == "1"
    }

    /// True when nothing is missing; otherwise throws (strict) or prints the reasons and returns false.
    public static func check(_ missing: [String], test: String = #function) throws -> Bool {
        guard !missing.isEmpty else { return true }
        let reasons = missing.joined(separator: ", ")
        if strict { throw Missing(description: "\(test): missing prerequisite(s) on a strict run: \(reasons)") }
        let line = "[prerequisites] skipping \(test): \(reasons)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }  // fd 2, not `stderr`: Swift 6 rejects the global
        return false
    }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }
}
