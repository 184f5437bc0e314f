import Foundation
import Testing

/// `vireo-vmm` parses its arguments by hand (no ArgumentParser in the VMM process): it must take
/// exactly `vireo run`'s flags and refuse bad ones with exactly `vireo run`'s words and status.
@Suite struct VMMArgumentsTests {
    private func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32?, output: String, error: String) {
        let process = try GuestProcess(arguments: arguments, environment: ["VIREO_SECCOMP": ""], executable: executable)
        defer { process.stop() }
        process.closeInput()
        let status = process.waitForExit(timeout: 30)
        return (status, process.output, process.errorOutput)
    }

    private var vireo: String { TestEnvironment.vireoBinary }
    private var vmm: String { TestEnvironment.vireoBinary + "-vmm" }

    @Test func badArgumentsGiveTheSameLineAndStatusAsVireoRun() throws {
        let cases: [[String]] = [
            [],
            ["--kernel", "/nonexistent/vmlinux"],
            ["--kernel"],
            ["--kernel", "/k", "--cpus"],
            ["--kernel", "/k", "--cpus", "two"],
            ["--kernel", "/k", "--cpus=0"],
            ["--kernel", "/k", "--cpu-weight", "x"],
            ["--kernel", "/k", "--frobnicate"],
            ["--kernel", "/k", "--memroy", "1G"],
            ["--kernel", "/k", "-x"],
            ["--kernel", "/k", "stray"],
            ["--kernel", "/k", "a", "b"],
            ["--kernel", "/k", "--rng=yes"],
            ["--kernel", "/k", "--memory", "lots"],
            ["--kernel", "/k", "--memory", "1P"],
            ["--kernel", "/k", "--boot", "bios"],
            ["--kernel", "/k", "--pit", "maybe"],
            ["--kernel", "/k", "--restore", "/r"],
            ["--restore", "/nonexistent/snap", "--boot", "bios"],
            ["--kernel", "/k", "--seccomp", "sometimes"],
            ["--kernel", "/k", "--cpu-max", "fast"],
            ["--kernel", "/k", "--memory-max", "big"],
            ["--kernel", "/k", "--cpu-affinity", "0-"],
            ["--kernel", "/k", "--balloon-target", "3"],
            ["--kernel", "/k", "--vsock", "cid=1"],
            ["--kernel", "/k", "--disk", ""],
            ["--kernel", "/k", "--net", "wifi"],
            ["--kernel", "/k", "--console-log-max", "tiny"],
            ["--kernel", "/k", "--virtio-console", "pipe=/x"],
            ["--kernel", "/k", "--memory", "--cpus", "2"],
            ["--spec", "/nonexistent/spec.json"],
            ["--spec", "/s", "--kernel", "/k"],
            ["--kernel", "/nonexistent/vmlinux", "--", "--cpus"],
        ]
        for arguments in cases {
            let expected = try run(vireo, ["run"] + arguments)
            let lean = try run(vmm, ["run"] + arguments)
            #expect(expected.status == 2 && expected.error.split(separator: "\n").count == 1, "vireo run \(arguments): \(expected)")
            #expect(lean.status == expected.status && lean.error == expected.error,
                    "vireo-vmm run \(arguments): \(String(describing: lean.status)) '\(lean.error)' vs '\(expected.error)'")
        }
        // Without `run`, `vireo-vmm` runs (its default subcommand), as before.
        let implicit = try run(vmm, ["--kernel", "/nonexistent/vmlinux"])
        let explicit = try run(vireo, ["run", "--kernel", "/nonexistent/vmlinux"])
        #expect(implicit.status == 2 && implicit.error == explicit.error)
    }

    /// Every long flag `vireo run --help` lists, `vireo-vmm help run` lists, and no other.
    @Test func theLeanParserKnowsExactlyVireoRunsFlags() throws {
        // The names at the start of each option line ("  -v, --verbose", "  --kernel <path>   help…").
        func longFlags(_ text: String) -> Set<String> {
            var flags = Set<String>()
            for line in text.split(separator: "\n") {
                let trimmed = line.drop { $0 == " " }
                guard trimmed.hasPrefix("-") else { continue }
                for token in trimmed.split(separator: " ") {
                    let word = token.trimmingCharacters(in: CharacterSet(charactersIn: ","))
                    if word.count == 2 && word.hasPrefix("-") { continue }  // "-v,"
                    // A wrapped help line may start with "--console-log)." too: names are [a-z-] only.
                    guard word.hasPrefix("--"), word.allSatisfy({ $0 == "-" || ("a"..."z").contains($0) }) else { break }
                    flags.insert(word)
                }
            }
            return flags
        }
        let reference = try run(vireo, ["run", "--help"])
        let lean = try run(vmm, ["help", "run"])
        #expect(reference.status == 0 && lean.status == 0)
        let referenceFlags = longFlags(reference.output)
        let leanFlags = longFlags(lean.output)
        #expect(referenceFlags.count > 30, "\(reference.output)")
        #expect(leanFlags == referenceFlags, "only vireo run: \(referenceFlags.subtracting(leanFlags)); only vireo-vmm: \(leanFlags.subtracting(referenceFlags))")
        let version = try run(vmm, ["version"])
        #expect(version.status == 0 && version.output.hasPrefix("vireo ") && version.output.contains("host: "))
    }

    /// `vireo run` hands a valid VM to the lean `vireo-vmm` next to it: the process that runs the
    /// guest is that executable, with the same arguments.
    @Test(.enabled { try TestEnvironment.available("VMMArgumentsTests", .kvm, .micro("idle")) })
    func vireoRunRunsItsVMInTheLeanVMM() throws {
        let kernel = try #require(TestEnvironment.micro("idle"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin"],
                                     environment: ["VIREO_SECCOMP": ""])
        defer { guest.stop() }
        #expect(guest.waitForOutput("VIREO-MICRO idle", timeout: 30), "stderr: \(guest.errorOutput)")
        let pid = guest.process.processIdentifier
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        #expect(executable == vmm || executable.hasSuffix("/vireo-vmm"), "the VM runs in \(executable)")
        let arguments = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).split(separator: "\0")
        #expect(arguments.dropFirst().map(String.init) == ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin"])
    }
}
