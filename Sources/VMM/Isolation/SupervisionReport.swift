#if canImport(Glibc)
import Glibc
#endif

/// What a warm-pool VMM forked ahead tells its supervisor (the pool member) once it has created
/// its VM's cgroups and jail directory itself: what to remove when it ends, and whether a seccomp
/// kill is to be named from the kernel log. The member then never parses the spec or plans.
///
/// The VMM sends it before it restores the machine, so before any guest code runs, and the member
/// reads exactly one message; still, as the member is root, every field is checked: bounded size,
/// absolute normalized paths, cgroups named `…/vireo/<vmID>`, at most `maximumCgroups` of them.
struct SupervisionReport: Equatable {
    static let maximumBytes = 4 * Int(PATH_MAX) + 64
    static let maximumCgroups = 3

    var jailRoot: String
    var createdRoot: Bool
    var cgroupDirectories: [String]
    var readKernelLog: Bool

    /// `supervise 1 <kmsg 0|1>\njail <created 0|1> <root>\ncgroup <directory>\n…`
    var encoded: [UInt8] {
        var text = "supervise 1 \(readKernelLog ? 1 : 0)\njail \(createdRoot ? 1 : 0) \(jailRoot)\n"
        for directory in cgroupDirectories { text += "cgroup \(directory)\n" }
        return Array(text.utf8)
    }

    /// The report in `bytes` for the VMM of `vmID`, or nil when anything is off.
    static func decode(_ bytes: [UInt8], vmID: String) -> SupervisionReport? {
        guard bytes.count <= maximumBytes, !bytes.contains(0) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 3, lines.last == "", lines.count - 3 <= maximumCgroups else { return nil }
        let header = lines[0].split(separator: " ")
        guard header.count == 3, header[0] == "supervise", header[1] == "1", header[2] == "0" || header[2] == "1" else { return nil }
        let jail = lines[1].split(separator: " ", maxSplits: 2)
        guard jail.count == 3, jail[0] == "jail", jail[1] == "0" || jail[1] == "1", isCleanAbsolute(jail[2]) else { return nil }
        var report = SupervisionReport(jailRoot: String(jail[2]), createdRoot: jail[1] == "1", cgroupDirectories: [],
                                       readKernelLog: header[2] == "1")
        for line in lines[2..<(lines.count - 1)] {
            guard line.hasPrefix("cgroup ") else { return nil }
            let directory = line.dropFirst("cgroup ".count)
            guard isCleanAbsolute(directory), directory.hasSuffix("/vireo/" + vmID) else { return nil }
            report.cgroupDirectories.append(String(directory))
        }
        return report
    }

    /// An absolute path of at most PATH_MAX bytes without empty, `.` or `..` components.
    static func isCleanAbsolute(_ path: Substring) -> Bool {
        guard path.hasPrefix("/"), path.utf8.count > 1, path.utf8.count < Int(PATH_MAX) else { return false }
        return !path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
            .contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }
}
