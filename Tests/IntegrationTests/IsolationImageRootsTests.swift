import Foundation
import Testing
import VMSpec

/// Issue 12: images pinned by descriptor. A daemon VM's spec carries the daemon's image roots; the
/// VMM opens kernel, initrd and disks beneath them component by component, never following a link,
/// fstat-checks the descriptor and uses only it. The daemon checks each path before the start, so
/// what these cases hand the VMM is exactly the state after a swap between that check and the
/// VMM's open: a checked file (or a directory on its way) replaced by a link to a root-only file
/// outside the roots, or a hard link to it. Each is refused with one line, and the root-only file is
/// left untouched.
@Suite(.enabled { try TestEnvironment.available("IsolationImageRootsTests", .kvm, .micro("poweroff")) })
struct IsolationImageRootsTests {
    private func run(_ spec: VMSpec, in directory: String, name: String) throws -> (status: Int32?, output: String, error: String) {
        let path = directory + "/" + name + ".json"
        try Data(try spec.jsonText().utf8).write(to: URL(fileURLWithPath: path))
        let guest = try GuestProcess(arguments: ["run", "--spec", path], executable: TestEnvironment.vireoBinary + "-vmm")
        defer { guest.stop() }
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        return (status, guest.output, guest.errorOutput)
    }

    private func spec(kernel: String, disk: String?, roots: [String]) -> VMSpec {
        var spec = VMSpec(machine: VMSpec.MachineShape(cpus: 1, memoryBytes: 64 << 20),
                          boot: .kernel(VMSpec.KernelBoot(kernel: kernel)),
                          devices: VMSpec.Devices(disks: disk.map { [VMSpec.Disk(path: $0)] } ?? []),
                          console: VMSpec.Console(toStdout: true, fromStdin: false))
        spec.isolation.imageRoots = roots
        return spec
    }

    @Test func swappedImagesAreRefusedBeneathTheRoots() throws {
        let poweroff = try #require(TestEnvironment.micro("poweroff"))
        let scratch = FileManager.default.temporaryDirectory.resolvingSymlinksInPath().appendingPathComponent("vireo-roots-\(getpid())").path
        try? FileManager.default.removeItem(atPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let root = scratch + "/root", outside = scratch + "/outside"
        for directory in [root, outside] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(atPath: poweroff, toPath: root + "/poweroff")
        try FileManager.default.copyItem(atPath: poweroff, toPath: outside + "/poweroff")
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: root + "/disk.img"))
        // The victim: a root-only file outside the roots.
        let secret = outside + "/secret.img"
        let secretBytes = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try secretBytes.write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o600)
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: outside + "/disk.img"))

        // Untouched paths run.
        var result = try run(spec(kernel: root + "/poweroff", disk: root + "/disk.img", roots: [root]), in: scratch, name: "good")
        #expect(result.status == 0, "stderr: \(result.error)")
        #expect(result.output.contains("VIREO-MICRO poweroff"), "stdout: \(result.output)")

        // After the check: the disk swapped for a link to the secret, a directory on the way swapped
        // for a link out of the root, the kernel swapped for a link (even one staying inside).
        try FileManager.default.createSymbolicLink(atPath: root + "/swapped.img", withDestinationPath: secret)
        try FileManager.default.createSymbolicLink(atPath: root + "/images", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: root + "/kernel-link", withDestinationPath: root + "/poweroff")
        #expect(link(secret, root + "/hardlinked.img") == 0, "link: \(String(cString: strerror(errno)))")
        let cases: [(VMSpec, String, String)] = [
            (spec(kernel: root + "/poweroff", disk: root + "/swapped.img", roots: [root]), "swapped.img", "symbolic link"),
            (spec(kernel: root + "/poweroff", disk: root + "/images/secret.img", roots: [root]), "images/secret.img", "'images' on its way"),
            (spec(kernel: root + "/images/poweroff", disk: nil, roots: [root]), "images/poweroff", "'images' on its way"),
            (spec(kernel: root + "/kernel-link", disk: nil, roots: [root]), "kernel-link", "symbolic link"),
            (spec(kernel: root + "/poweroff", disk: root + "/hardlinked.img", roots: [root]), "hardlinked.img", "other hard link"),
            (spec(kernel: outside + "/poweroff", disk: nil, roots: [root]), "outside/poweroff", "outside the image roots"),
            (spec(kernel: root + "/poweroff", disk: outside + "/disk.img", roots: [root]), "outside/disk.img", "outside the image roots"),
        ]
        for (index, (spec, names, mentions)) in cases.enumerated() {
            result = try run(spec, in: scratch, name: "case\(index)")
            let lines = result.error.split(separator: "\n").filter { !$0.isEmpty }
            #expect(result.status == 2, "case \(index): status \(String(describing: result.status)), stderr: \(result.error)")
            #expect(lines.count == 1 && result.error.contains(names) && result.error.contains(mentions),
                    "case \(index) should name \(names) and say '\(mentions)': \(result.error)")
            #expect(!result.output.contains("VIREO-MICRO"), "case \(index): the guest ran")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: secret)) == secretBytes, "the root-only file changed")
        var info = stat()
        #expect(stat(secret, &info) == 0 && info.st_mode & 0o777 == 0o600 && info.st_uid == getuid())

        // Without roots (`vireo run`), the same spec follows the link as before: the roots are what refuse it.
        result = try run(spec(kernel: root + "/kernel-link", disk: nil, roots: []), in: scratch, name: "noroots")
        #expect(result.status == 2 && result.error.contains("outside the image roots"), "an empty root list allows nothing: \(result.error)")
        var open = spec(kernel: root + "/kernel-link", disk: nil, roots: [])
        open.isolation.imageRoots = nil
        result = try run(open, in: scratch, name: "unrestricted")
        #expect(result.status == 0, "stderr: \(result.error)")
    }
}
