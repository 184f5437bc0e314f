import Foundation
import Testing

/// Bad user input: one clear line on stderr naming the problem, exit status 2, no crash.
@Suite struct BadInputTests {
    private func runVireo(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
        let guest = try GuestProcess(arguments: arguments, environment: environment)
        guest.closeInput()
        let status = guest.waitForExit(timeout: 30)
        return (status ?? -1, guest.errorOutput)
    }

    private func expectOneLineError(_ arguments: [String], mentions: String, environment: [String: String] = [:],
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (status, stderr) = try runVireo(arguments, environment: environment)
        let lines = stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(status == 2, "exit status for \(arguments): \(status), stderr: \(stderr)", sourceLocation: sourceLocation)
        #expect(lines.count == 1, "expected one line, got: \(stderr)", sourceLocation: sourceLocation)
        #expect(stderr.lowercased().contains(mentions.lowercased()), "stderr should mention '\(mentions)': \(stderr)",
                sourceLocation: sourceLocation)
    }

    private func tempFile(_ name: String, bytes: [UInt8]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-badinput-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    @Test func missingKernel() throws {
        try expectOneLineError(["run", "--kernel", "/nonexistent/vmlinux"], mentions: "/nonexistent/vmlinux")
    }

    @Test func directoryAsKernel() throws {
        try expectOneLineError(["run", "--kernel", "/tmp"], mentions: "not a regular file")
    }

    @Test func nonKernelFile() throws {
        let path = try tempFile("notes.txt", bytes: Array("just some text, not a kernel at all\n".utf8))
        try expectOneLineError(["run", "--kernel", path], mentions: "not an ELF or bzImage")
    }

    @Test func truncatedELFKernel() throws {
        // A valid ELF header whose program headers lie past the end of the file.
        var header = [UInt8](repeating: 0, count: 64)
        header[0...3] = [0x7f, 0x45, 0x4c, 0x46]; header[4] = 2; header[5] = 1; header[6] = 1
        header[16] = 2; header[18] = 62; header[20] = 1
        header[32] = 0x40; header[54] = 56; header[56] = 4  // phoff 64, phentsize 56, phnum 4
        let path = try tempFile("truncated.elf", bytes: header)
        try expectOneLineError(["run", "--kernel", path], mentions: "truncated")
    }

    @Test func truncatedBzImage() throws {
        var image = [UInt8](repeating: 0, count: 1024)
        image[0x1f1] = 30                  // setup_sects: far more than the file holds
        image[0x1fe] = 0x55; image[0x1ff] = 0xaa
        image[0x202...0x205] = [0x48, 0x64, 0x72, 0x53]  // "HdrS"
        image[0x206] = 0x0f; image[0x207] = 0x02
        let path = try tempFile("truncated.bzImage", bytes: image)
        try expectOneLineError(["run", "--kernel", path], mentions: "truncated")
    }

    @Test(.enabled { try TestEnvironment.available("BadInputTests", .micro("poweroff")) })
    func initrdLargerThanRAM() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let initrd = try tempFile("big.initrd", bytes: [UInt8](repeating: 0xAB, count: 20 << 20))
        try expectOneLineError(["run", "--kernel", kernel, "--initrd", initrd, "--memory", "16M"], mentions: "initrd")
    }

    @Test func badSizesAndCounts() throws {
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--memory", "0"], mentions: "--memory")
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--memory", "1P"], mentions: "too large")
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--memory", "lots"], mentions: "not a size")
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--cpus", "0"], mentions: "--cpus")
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--cpus", "10000"], mentions: "--cpus")
        try expectOneLineError(["run", "--kernel", "/nonexistent", "--boot", "bios"], mentions: "--boot")
        try expectOneLineError(["run"], mentions: "--kernel")
        try expectOneLineError(["run", "--kernel", "x", "--frobnicate"], mentions: "--frobnicate")
    }

    @Test(.enabled { try TestEnvironment.available("BadInputTests", .micro("poweroff")) })
    func noKVMDevice() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        try expectOneLineError(["run", "--kernel", kernel], mentions: "/nonexistent/kvm",
                               environment: ["VIREO_KVM_DEVICE": "/nonexistent/kvm"])
    }

    /// A control socket that cannot listen (its path is a directory) fails the run with one line
    /// before any guest code runs: the guest, which prints at once and exits 0, prints nothing.
    @Test(.enabled { try TestEnvironment.available("BadInputTests", .micro("hello")) })
    func apiSocketThatCannotListen() throws {
        let kernel = try #require(TestEnvironment.micro("hello"))
        let directory = try TestEnvironment.freshDirectory("vireo-badsocket").path
        try FileManager.default.createDirectory(atPath: directory + "/taken/child", withIntermediateDirectories: true)
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--api-socket", directory + "/taken", "--no-stdin"])
        let status = guest.waitForExit(timeout: 30)
        let errors = guest.errorOutput.split(separator: "\n").filter { !$0.contains("see docs/security.md") }
        #expect(status == 1, "exit status \(status ?? -1): \(guest.errorOutput)")
        #expect(errors.count == 1 && errors.first?.contains("cannot listen on the API socket \(directory)/taken") == true, "\(guest.errorOutput)")
        #expect(guest.output.isEmpty, "guest code ran: \(guest.output)")
        #expect(FileManager.default.fileExists(atPath: directory + "/taken/child"), "the directory in the way was touched")
    }
}
