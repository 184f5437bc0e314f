import Foundation
import Testing
import VMSpec

/// `vireo-vmm run --spec FILE`, as the daemon runs every VM: the file describes the whole VM, is
/// never read through a link, and is held to the same limits and words as `vireo run`'s flags.
@Suite struct SpecFileTests {
    private static func write(_ text: String, name: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-spec-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try? FileManager.default.removeItem(atPath: path)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func run(_ arguments: [String]) throws -> (status: Int32?, output: String, error: String) {
        let guest = try GuestProcess(arguments: arguments, executable: TestEnvironment.vireoBinary + "-vmm")
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        return (status, guest.output, guest.errorOutput)
    }

    @Test(.enabled { try TestEnvironment.available("SpecFileTests", .kvm, .micro("poweroff")) })
    func aSpecFileRunsTheVMItDescribes() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let spec = VMSpec(machine: VMSpec.MachineShape(cpus: 1, memoryBytes: 64 << 20),
                          boot: .kernel(VMSpec.KernelBoot(kernel: kernel)),
                          console: VMSpec.Console(toStdout: true, fromStdin: false))
        let path = try SpecFileTests.write(try spec.jsonText(), name: "poweroff.json")
        let (status, output, error) = try run(["run", "--spec", path])
        #expect(status == 0, "stderr: \(error)")
        #expect(output.contains("VIREO-MICRO poweroff"), "stdout: \(output)")
    }

    @Test func badSpecFilesAreOneLineErrors() throws {
        let good = VMSpec(boot: .kernel(VMSpec.KernelBoot(kernel: "/nonexistent/vmlinux")))
        let valid = try SpecFileTests.write(try good.jsonText(), name: "valid.json")
        let link = valid + ".link"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: valid)
        var tooMany = good
        tooMany.machine.cpus = 0
        let cases: [([String], String)] = [
            (["run", "--spec", link], "symbolic link"),
            (["run", "--spec", try SpecFileTests.write(try good.jsonText().replacing("\"version\": 1", with: "\"version\": 7"), name: "v7.json")],
             "this VMM reads spec version 1, the file is version 7"),
            (["run", "--spec", try SpecFileTests.write("{\"version\": 1, \"machine\": 3}", name: "shape.json")], "'machine'"),
            (["run", "--spec", try SpecFileTests.write(try tooMany.jsonText(), name: "cpus.json")], "--cpus must be between 1 and 254, got 0"),
            (["run", "--spec", valid, "--kernel", "/k"], "describes the whole VM"),
            (["run", "--spec", "/nonexistent/spec.json"], "No such file"),
        ]
        for (arguments, mentions) in cases {
            let (status, _, error) = try run(arguments)
            #expect(status == 2, "\(arguments): \(String(describing: status)) \(error)")
            #expect(error.split(separator: "\n").count == 1 && error.contains(mentions), "\(arguments): \(error)")
        }
    }

    /// `--seccomp` wins over `$VIREO_SECCOMP`, which is then not looked at (as before specs).
    @Test func theSeccompFlagWinsOverTheEnvironment() throws {
        let guest = try GuestProcess(arguments: ["run", "--kernel", "/nonexistent/vmlinux", "--seccomp", "on"],
                                     environment: ["VIREO_SECCOMP": "strict"])
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        #expect(status == 2 && guest.errorOutput.contains("/nonexistent/vmlinux") && !guest.errorOutput.contains("--seccomp"),
                "\(String(describing: status)): \(guest.errorOutput)")
    }

    /// `--boot` is checked with `--restore` too, as it was before flags became a spec.
    @Test func aBadBootProtocolIsRefusedWithRestore() throws {
        let guest = try GuestProcess(arguments: ["run", "--restore", "/nonexistent/snap", "--boot", "bios"])
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        #expect(status == 2 && guest.errorOutput.contains("--boot must be one of auto, linux, pvh; got 'bios'"),
                "\(String(describing: status)): \(guest.errorOutput)")
    }
}
