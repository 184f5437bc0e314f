import Testing
import VMSpec

/// The spec's JSON form, its version gate and the one validator's messages in both vocabularies.
@Suite struct VMSpecTests {
    static let full = VMSpec(
        machine: VMSpec.MachineShape(cpus: 4, memoryBytes: 1 << 30),
        boot: .kernel(VMSpec.KernelBoot(kernel: "/k/vmlinux", initrd: "/k/initrd", cmdline: "console=ttyS0 \"quoted\" ü", bootProtocol: .pvh)),
        devices: VMSpec.Devices(disks: [VMSpec.Disk(path: "/d/root.img", id: "root"), VMSpec.Disk(path: "/d/c.ovl", backing: "/d/base")],
                                nets: [VMSpec.Net(mode: .user), VMSpec.Net(mode: .tap, tap: "vtap0", mac: "02:00:00:00:00:01")],
                                rng: true, vsock: VMSpec.Vsock(cid: 0xFFFF_FFFE, socket: "/run/v.sock"),
                                balloon: VMSpec.Balloon(targetBytes: 64 << 20),
                                virtioConsole: VMSpec.VirtioConsole(kind: .socket, path: "/run/hvc"), debugExit: true, pit: true),
        console: VMSpec.Console(logPath: "vmm/console.log", logMaxBytes: 1 << 20, toStdout: false, fromStdin: false),
        control: VMSpec.Control(apiSocket: "vmm/api.sock", snapshotSignal: "SIGUSR2", snapshotDirectory: "/snaps"),
        resources: VMSpec.Resources(cpuWeight: 300, cpuMax: .init(quotaMicros: 20_000), memoryMaxBytes: 2 << 30, cpuAffinity: [1, 0]),
        isolation: VMSpec.Isolation(seccomp: .kill, jail: true, jailDirectory: "/run/jail", user: "nobody", group: "0"))

    @Test func aSpecSurvivesItsJSONForm() throws {
        for spec in [VMSpecTests.full, VMSpec(boot: .restore(directory: "/snap"))] {
            try SpecValidator.validate(spec)
            let text = try spec.jsonText()
            #expect(try VMSpec.parse(Array(text.utf8)) == spec, "\(text)")
        }
        let json = try JSONCoding.encode(VMSpecTests.full)
        #expect(json["version"] == .int(1) && json["machine"]?["memoryBytes"] == .int(1 << 30))
        #expect(json["boot"]?["kernel"]?["bootProtocol"] == .string("pvh") && json["isolation"]?["seccomp"] == .string("kill"))
        #expect(json["devices"]?["pit"] == .bool(true))
        // Absent optionals are left out rather than written as null (no "pit": the host decides).
        #expect(try JSONCoding.encode(VMSpec(boot: .restore(directory: "/s")))["devices"]?["pit"] == nil)
        #expect(try JSONCoding.encode(VMSpec(boot: .restore(directory: "/s")))["control"] == .object([]))
    }

    @Test func otherVersionsAndBadShapesAreRefused() throws {
        var text = try VMSpecTests.full.jsonText()
        text = text.replacing("\"version\": 1", with: "\"version\": 2", maxReplacements: 1)
        #expect(text.contains("\"version\": 2"))
        #expect(throws: JSONCoding.Failure.self) { try VMSpec.parse(Array(text.utf8)) }
        let failures: [(String, String)] = [
            (#"{"version":1}"#, "machine"),
            (#"{"version":1,"machine":{"cpus":"2","memoryBytes":1},"boot":{"restore":"/s"},"devices":{},"console":{},"control":{},"resources":{},"isolation":{}}"#, "machine.cpus"),
            (#"{"version":1,"machine":{"cpus":1,"memoryBytes":1},"boot":{"restore":"/s","kernel":{}},"devices":{},"console":{},"control":{},"resources":{},"isolation":{}}"#, "boot"),
        ]
        for (json, path) in failures {
            do {
                _ = try VMSpec.parse(Array(json.utf8))
                Issue.record("accepted \(json)")
            } catch let failure as JSONCoding.Failure {
                #expect(failure.path.hasPrefix(path), "\(failure)")
            }
        }
    }

    /// Each problem reads the same from both sides; only the name of the field differs.
    @Test func oneProblemTwoVocabularies() {
        let cases: [(VMSpec, api: String, commandLine: String)] = [
            (spec { $0.machine.cpus = 0 }, "field 'cpus' must be between 1 and 254, got 0", "--cpus must be between 1 and 254, got 0"),
            (spec { $0.machine.memoryBytes = 8 << 20 }, "field 'memoryMiB' is too small: it must be between 16 and 1048576 MiB, got 8 MiB",
             "--memory is too small: it must be between 16 and 1048576 MiB, got 8 MiB"),
            (spec { $0.machine.memoryBytes = (16 << 20) + 100 }, "field 'memoryMiB' must be a whole number of 4 KiB pages, got 16777316 bytes",
             "--memory must be a whole number of 4 KiB pages, got 16777316 bytes"),
            (spec { $0.devices.nets = Array(repeating: VMSpec.Net(mode: .user), count: 11) },
             "field 'nets': 0 disk(s), 11 NIC(s) need 11 virtio slots; the VM has 10 virtio device slots",
             "--net: 0 disk(s), 11 NIC(s) need 11 virtio slots; the VM has 10 virtio device slots"),
            (spec { $0.devices.disks = [VMSpec.Disk(path: "/a/x.img"), VMSpec.Disk(path: "/b/x.img")] },
             "field 'disks[1].path': two disks have the id 'x.img' (a disk's id defaults to its file name): give each disk a distinct id",
             "--disk: two disks have the id 'x.img' (a disk's id defaults to its file name): give each disk a distinct id"),
            (spec { $0.isolation.group = "0" }, "field 'isolation.group' needs 'isolation.user'", "--gid needs --uid"),
            (spec { $0.control.snapshotSignal = "SIGUSR2" }, "field 'snapshot.signal' needs 'snapshot.directory' (where the snapshots go)",
             "--snapshot-on needs --snapshot-dir (where the snapshots go)"),
            (spec { $0.resources.cpuMax = .init(quotaMicros: 5_000, periodMicros: 2_000_000) },
             "field 'resources.cpuMax.periodMicros': the period must be between 1ms and 1s (1000 to 1000000 µs), got 2000000 µs",
             "--cpu-max: the period must be between 1ms and 1s (1000 to 1000000 µs), got 2000000 µs"),
            (spec { $0.devices.balloon = VMSpec.Balloon(targetBytes: 1 << 30) },
             "field 'balloon' 1 GiB is larger than the guest's RAM (512 MiB)", "--balloon-target 1 GiB is larger than the guest's RAM (512 MiB)"),
        ]
        for (spec, api, commandLine) in cases {
            do {
                try SpecValidator.validate(spec)
                Issue.record("accepted \(spec)")
            } catch {
                #expect(error.message(.api) == api)
                #expect(error.message(.commandLine) == commandLine)
            }
        }
    }

    @Test func theLargestValidSpecPasses() throws {
        try SpecValidator.validate(spec {
            $0.machine = VMSpec.MachineShape(cpus: 254, memoryBytes: 1 << 40)
            $0.devices.disks = (0..<10).map { VMSpec.Disk(path: "/d/\($0).img") }
            $0.resources.memoryMaxBytes = (1 << 40) + (32 << 20)
        })
    }

    private func spec(_ change: (inout VMSpec) -> Void) -> VMSpec {
        var spec = VMSpec(boot: .kernel(VMSpec.KernelBoot(kernel: "/k/vmlinux")))
        change(&spec)
        return spec
    }
}

/// The control socket's typed messages: what the VMM writes is what the manager reads.
@Suite struct ControlMessageTests {
    @Test func requestsAreTheirLines() {
        let requests: [ControlRequest] = [.status, .pause, .resume, .stop, .kill, .console, .balloon("64"), .snapshot(directory: "/s n")]
        for request in requests { #expect(ControlRequest(line: request.line) == request) }
        #expect(ControlRequest(line: "balloon") == nil && ControlRequest(line: "STATUS") == nil && ControlRequest(line: "") == nil)
    }

    @Test func aStatusReplyKeepsItsFieldsAtTheTopLevel() throws {
        let status = VMMStatus(state: "running", vcpus: 2, exits: ExitCounts(io: 5, mmio: 1 << 40, kicks: 3),
                               devices: .object([("rng", .object([("active", .bool(true)), ("bytes", .int(64))])), ("blk", .int(2))]),
                               isolation: .null)
        let reply = ControlReply(ok: true, status: status)
        let line = reply.line
        #expect(line.hasPrefix(#"{"ok":true,"state":"running","vcpus":2,"exits":{"io":5,"mmio":1099511627776,"emulated":0,"#), "\(line)")
        #expect(line.hasSuffix(#""devices":{"rng":{"active":true,"bytes":64},"blk":2},"isolation":null}"#), "\(line)")
        #expect(try ControlReply.parse(line) == reply)
        #expect(try ControlReply.parse(line).status?.exits.kicks == 3)
    }

    @Test func refusalsAndOtherRepliesRoundTrip() throws {
        let replies = [ControlReply.failure("can't \"pause\"\n\\ now", state: "running"), ControlReply(ok: true, state: "paused"),
                       ControlReply(ok: true, snapshot: "/tmp/s", ms: 12), ControlReply(ok: true, balloonTargetMiB: 64),
                       ControlReply(ok: true, console: true)]
        for reply in replies {
            #expect(!reply.line.contains("\n"))
            #expect(try ControlReply.parse(reply.line) == reply, "\(reply.line)")
        }
        #expect(ControlReply(ok: true, balloonTargetMiB: 64).line == #"{"ok":true,"balloon_target_mib":64}"#)
        #expect(throws: (any Error).self) { try ControlReply.parse(#"{"state":"running"}"#) }
    }

    /// Issue 12: the daemon's per-VM uid travels typed (`isolation.uid`/`gid`), and its image roots
    /// as `isolation.imageRoots`; both survive the file and are checked for how they fit together.
    @Test func typedIdentityAndImageRootsRoundTripAndFit() throws {
        var spec = VMSpec(boot: .kernel(VMSpec.KernelBoot(kernel: "/k")))
        spec.isolation = VMSpec.Isolation(jail: true, uid: 0x7E56_0001, gid: 0x7E56_0001, imageRoots: ["/srv/images", "/var/lib/vireo/images"])
        try SpecValidator.validate(spec)
        #expect(try VMSpec.parse(Array(try spec.jsonText().utf8)) == spec)
        let json = try JSONCoding.encode(spec)
        #expect(json["isolation"]?["uid"] == .int(0x7E56_0001), "\(json)")
        var both = spec
        both.isolation.user = "nobody"
        var gidAlone = VMSpec(boot: .kernel(VMSpec.KernelBoot(kernel: "/k")))
        gidAlone.isolation.gid = 5
        var relative = spec
        relative.isolation.imageRoots = ["images"]
        for (bad, field) in [(both, "isolation.uid"), (gidAlone, "isolation.gid"), (relative, "isolation.imageRoots")] {
            #expect(throws: SpecError.self, "\(field)") { try SpecValidator.validate(bad) }
            do {
                try SpecValidator.validate(bad)
            } catch {
                #expect(error.field == field, "\(error)")
            }
        }
    }
}
