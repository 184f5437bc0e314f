/// What is wrong with a spec: the field (in the API's names, e.g. `disks[1].path`) and the problem.
/// One problem text, two renderings: the API names the field (`field 'cpus' must be …`), `vireo run`
/// names its flag (`--cpus must be …`); `{field}` in the problem names another field the same way.
public struct SpecError: Error, Sendable, Equatable, CustomStringConvertible {
    /// How a message names fields.
    public enum Vocabulary: Sendable { case api, commandLine }

    public let field: String
    /// Follows the field's name: starts with a space or ':'.
    public let problem: String

    public init(_ field: String, _ problem: String) {
        self.field = field
        self.problem = problem
    }

    /// The message as the API (422) or the command line (exit 2) prints it.
    public func message(_ vocabulary: Vocabulary) -> String {
        var text = SpecError.name(field, vocabulary)
        var rest = Substring(problem)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            text += rest[..<open]
            let other = String(rest[rest.index(after: open)..<close])
            text += vocabulary == .api ? "'\(other)'" : SpecError.flag(for: other)
            rest = rest[rest.index(after: close)...]
        }
        return text + rest
    }

    public var description: String { message(.api) }

    /// `field 'cpus'` or `--cpus`.
    public static func name(_ field: String, _ vocabulary: Vocabulary) -> String {
        switch vocabulary {
        case .api: return "field '\(field)'"
        case .commandLine: return flag(for: field)
        }
    }

    /// The `vireo run` flag that sets a field (`disks[2].path` → `--disk`).
    public static func flag(for field: String) -> String {
        var key = field
        if let bracket = key.firstIndex(of: "[") { key = String(key[..<bracket]) }
        for (prefix, flag) in flags where key == prefix || key.hasPrefix(prefix + ".") { return flag }
        return "--" + key
    }

    /// API field → `vireo run` flag, most specific first.
    static let flags: [(String, String)] = [
        ("version", "--spec"), ("kernel", "--kernel"), ("initrd", "--initrd"), ("cmdline", "--cmdline"), ("restore", "--restore"),
        ("cpus", "--cpus"), ("memoryMiB", "--memory"), ("disks", "--disk"), ("nets", "--net"), ("rng", "--rng"),
        ("vsock", "--vsock"), ("balloon", "--balloon-target"), ("virtioConsole", "--virtio-console"),
        ("console.logMaxBytes", "--console-log-max"), ("snapshot.signal", "--snapshot-on"), ("snapshot.directory", "--snapshot-dir"),
        ("resources.cpuWeight", "--cpu-weight"), ("resources.cpuMax", "--cpu-max"), ("resources.memoryMaxMiB", "--memory-max"),
        ("resources.cpuAffinity", "--cpu-affinity"), ("isolation.seccomp", "--seccomp"), ("isolation.jail", "--jail"),
        ("isolation.user", "--uid"), ("isolation.group", "--gid"),
    ]
}
