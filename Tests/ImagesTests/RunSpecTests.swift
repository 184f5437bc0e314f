import Foundation
import Testing
@testable import Images

/// ENTRYPOINT/CMD/env/workdir/user merging (Docker's rules) and the config disk's encoding.
@Suite struct RunSpecTests {
    let config = ImageConfiguration(architecture: "amd64", os: "linux",
                                    config: .init(User: "nobody", Env: ["PATH=/bin", "A=1"], Entrypoint: ["/bin/entry"],
                                                  Cmd: ["default"], WorkingDir: "/work"), rootfs: nil)

    @Test func imageDefaultsAndOverrides() throws {
        let plain = try RunSpec.make(config: config, overrides: .init(), hostEnvironment: [:], defaultHostname: "h")
        #expect(plain.arguments == ["/bin/entry", "default"])
        #expect(plain.environment == ["PATH=/bin", "A=1", "HOSTNAME=h", "HOME=/root"])
        #expect(plain.workingDirectory == "/work" && plain.user == "nobody")

        var overrides = RunSpec.Overrides()
        overrides.command = ["x", "y"]
        overrides.environment = ["A=2", "FROM_HOST", "MISSING"]
        overrides.workingDirectory = "/tmp"
        overrides.user = "0:0"
        let custom = try RunSpec.make(config: config, overrides: overrides, hostEnvironment: ["FROM_HOST": "v"], defaultHostname: "h")
        #expect(custom.arguments == ["/bin/entry", "x", "y"])
        #expect(custom.environment == ["PATH=/bin", "A=2", "FROM_HOST=v", "HOSTNAME=h", "HOME=/root"])
        #expect(custom.workingDirectory == "/tmp" && custom.user == "0:0")

        overrides = RunSpec.Overrides()
        overrides.entrypoint = "/bin/sh"
        #expect(try RunSpec.make(config: config, overrides: overrides, hostEnvironment: [:], defaultHostname: "h").arguments == ["/bin/sh"])
    }

    @Test func refusesNoCommandAndRelativeWorkdir() {
        let empty = ImageConfiguration(architecture: "amd64", os: "linux", config: nil, rootfs: nil)
        #expect(throws: ImageError.self) { try RunSpec.make(config: empty, overrides: .init(), hostEnvironment: [:], defaultHostname: "h") }
        var overrides = RunSpec.Overrides()
        overrides.workingDirectory = "relative"
        #expect(throws: ImageError.self) { try RunSpec.make(config: config, overrides: overrides, hostEnvironment: [:], defaultHostname: "h") }
    }

    @Test func configDiskLayoutAndStatus() throws {
        let spec = try RunSpec.make(config: config, overrides: .init(), hostEnvironment: [:], defaultHostname: "h")
        let bytes = try GuestConfigDisk.encode(spec)
        #expect(Array(bytes.prefix(8)) == Array("VIREOCF1".utf8))
        #expect(bytes.count == 8192)
        let length = Int(bytes[8]) | Int(bytes[9]) << 8
        let records = bytes[12..<(12 + length)].split(separator: 0, omittingEmptySubsequences: false).dropLast()
        #expect(records.map { String(decoding: $0, as: UTF8.self) }.first == "A/bin/entry")
        // The status the init writes is read back from the same offset.
        let path = "/tmp/vireo-config-\(getpid())"
        unlink(path)
        try GuestConfigDisk.write(spec, to: path)
        defer { unlink(path) }
        #expect(GuestConfigDisk.status(at: path) == nil)
        let fd = open(path, O_WRONLY)
        _ = Array("VIREOST142\0".utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096) }
        close(fd)
        #expect(GuestConfigDisk.status(at: path) == 42)
        #expect(!GuestConfigDisk.outOfMemory(at: path))
        // The init's OOM mark after the status's NUL; the status reads as before.
        let marked = open(path, O_WRONLY)
        _ = Array("VIREOST1137\0oom\0".utf8).withUnsafeBytes { pwrite(marked, $0.baseAddress, $0.count, 4096) }
        close(marked)
        #expect(GuestConfigDisk.status(at: path) == 137)
        #expect(GuestConfigDisk.outOfMemory(at: path))
    }
}

/// `--ulimit`, the network and the terminal on the config disk.
@Suite struct RunSpecHostSetupTests {
    @Test func ulimitParsesDockerSyntax() throws {
        let both = try RunSpec.ResourceLimit.parse("nofile=256:512")
        #expect(both.resource == 7 && both.soft == 256 && both.hard == 512)
        let one = try RunSpec.ResourceLimit.parse("nproc=100")
        #expect(one.resource == 6 && one.soft == 100 && one.hard == 100)
        let unlimited = try RunSpec.ResourceLimit.parse("core=-1:unlimited")
        #expect(unlimited.soft == nil && unlimited.hard == nil)
        for (text, problem) in [("nofile", "expected NAME=SOFT[:HARD]"), ("bogus=1", "unknown limit 'bogus'"), ("nofile=10:5", "soft limit is above the hard"),
                                ("nofile=x", "'x' is not a number"), ("nofile=1:2:3", "expected NAME=SOFT[:HARD]"), ("nofile=-1:5", "soft limit is above")] {
            #expect(throws: ImageError.self, "\(text)") { try RunSpec.ResourceLimit.parse(text) }
            do { _ = try RunSpec.ResourceLimit.parse(text) } catch { #expect("\(error)".hasPrefix("--ulimit '\(text)': ") && "\(error)".contains(problem), "\(error)") }
        }
    }

    @Test func hostSetupRecordsReachTheConfigDisk() throws {
        var spec = RunSpec(arguments: ["sh"], environment: [], workingDirectory: "/", user: "", hostname: "h")
        spec.terminalSize = .init(rows: 33, columns: 97)
        spec.network = .init(address: "10.0.2.15", prefixLength: 24, gateway: "10.0.2.2", dns: "10.0.2.3")
        spec.resourceLimits = [try RunSpec.ResourceLimit.parse("nofile=256:512"), try RunSpec.ResourceLimit.parse("core=unlimited")]
        let bytes = try GuestConfigDisk.encode(spec)
        let length = Int(bytes[8]) | Int(bytes[9]) << 8
        let records = bytes[12..<(12 + length)].split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(records == ["Ash", "W/", "Hh", "Y33 97", "N10.0.2.15/24", "G10.0.2.2", "D10.0.2.3", "R7 256 512",
                            "R4 18446744073709551615 18446744073709551615"])
    }
}
