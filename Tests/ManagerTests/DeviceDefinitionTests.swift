import Foundation
import Testing
@testable import Manager

/// Disks, NICs, rng, cgroup/pinning settings, confinement and snapshot restores in VM definitions:
/// validation (each error names its field), merge-patch updates, storage and the VMM's arguments.
@Suite struct DeviceDefinitionTests {
    struct BadSnapshot: Error, CustomStringConvertible { var description: String }

    let validator = DefinitionValidator(
        checkFile: { path in path.hasPrefix("/k/") ? .regularFile : .missing },
        readSnapshot: { directory in
            guard directory == "/tmp" else { throw BadSnapshot(description: "the snapshot's checksum does not match") }
            return SnapshotInfo(kernel: "/k/vmlinux", cmdline: "console=ttyS0 quiet", cpus: 2, memoryMiB: 256, diskCount: 1)
        },
        hostCPUs: 4)

    private func create(_ json: String) throws -> VMDefinition {
        try validator.create(from: try JSONParser.parse(json))
    }

    private func expectFailure(_ json: String, field: String, contains text: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try create(json)
            Issue.record("accepted \(json)", sourceLocation: sourceLocation)
        } catch let error as APIError {
            #expect(error.status == 422, "\(error)", sourceLocation: sourceLocation)
            #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(text), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func publishedPortsAndFixedAddressesReachTheSpec() throws {
        let vm = try create(#"""
            {"name":"p","kernel":"/k/vmlinux","nets":[{"mode":"user","ports":[{"transport":"tcp","hostAddress":"127.0.0.1","hostPort":8080,"guestPort":80}],
             "ipv4":{"address":"10.0.2.15","prefixLength":24,"gateway":"10.0.2.2","dns":"10.0.2.3"}}]}
            """#)
        let spec = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20).spec(for: vm)
        #expect(spec.devices.nets == [VMSpec.Net(mode: .user, ports: [.init(hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80)], ipv4: .userDefault)])
        expectFailure(#"{"name":"p","kernel":"/k/vmlinux","nets":[{"mode":"user","ports":[{"transport":"tcp","hostPort":80,"guestPort":1},{"transport":"tcp","hostPort":80,"guestPort":2}]}]}"#,
                      field: "nets[0].ports[1].hostPort", contains: "published twice")
    }

    @Test func devicesAndSettingsParse() throws {
        let vm = try create(#"""
            {"name":"a","kernel":"/k/vmlinux","disks":[{"path":"/k/root.ext4"},{"path":"/k/data","readOnly":true}],
             "nets":[{"mode":"user"},{"mode":"tap","tap":"vtap0","mac":"02:AB:00:00:00:01"}],"rng":true,"pit":true,
             "resources":{"cpuWeight":300,"cpuMax":{"quotaMicros":20000},"memoryMaxMiB":600,"cpuAffinity":[1,0]},
             "isolation":{"seccomp":"kill","jail":true,"user":"0","group":"0"}}
            """#)
        #expect(vm.disks == [DiskDefinition(path: "/k/root.ext4"), DiskDefinition(path: "/k/data", readOnly: true)])
        #expect(vm.nets == [NetDefinition(mode: .user), NetDefinition(mode: .tap, tap: "vtap0", mac: "02:ab:00:00:00:01")])
        #expect(vm.rng)
        #expect(vm.pit == true)
        #expect(try create(#"{"name":"b","kernel":"/k/vmlinux","pit":null}"#).pit == nil, "null: the VMM decides")
        #expect(vm.resources == ResourceSettings(cpuWeight: 300, cpuMax: .init(quotaMicros: 20000, periodMicros: 100_000),
                                                 memoryMaxMiB: 600, cpuAffinity: [1, 0]))
        #expect(vm.isolation == IsolationDefinition(seccomp: "kill", jail: true, user: "0", group: "0"))
        let spec = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20).spec(for: vm)
        #expect(spec.boot == .kernel(VMSpec.KernelBoot(kernel: "/k/vmlinux")))
        #expect(spec.devices.disks == [VMSpec.Disk(path: "/k/root.ext4"), VMSpec.Disk(path: "/k/data", readOnly: true)])
        #expect(spec.devices.nets == [VMSpec.Net(mode: .user), VMSpec.Net(mode: .tap, tap: "vtap0", mac: "02:ab:00:00:00:01")])
        #expect(spec.devices.rng)
        #expect(spec.devices.pit == true)
        #expect(spec.resources == VMSpec.Resources(cpuWeight: 300, cpuMax: .init(quotaMicros: 20000, periodMicros: 100_000),
                                                   memoryMaxBytes: 600 << 20, cpuAffinity: [1, 0]))
        #expect(spec.isolation == VMSpec.Isolation(seccomp: .kill, jail: true, user: "0", group: "0"))
        #expect(spec.console == VMSpec.Console(logPath: "vmm/console.log", logMaxBytes: 1 << 20, toStdout: false, fromStdin: false))
        #expect(spec.control.apiSocket == "vmm/api.sock")
        // What the VMM reads back is what the daemon wrote.
        #expect(try VMSpec.parse(Array(spec.jsonText().utf8)) == spec)
    }

    @Test func badDevicesNameTheirField() {
        let base = #""name":"a","kernel":"/k/vmlinux""#
        expectFailure("{\(base),\"disks\":\"/k/x\"}", field: "disks", contains: "must be an array")
        expectFailure("{\(base),\"disks\":[{}]}", field: "disks[0].path", contains: "required")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/nope\"}]}", field: "disks[0].path", contains: "no such file")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/a,b\"}]}", field: "disks[0].path", contains: "','")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/a\"},{\"path\":\"/k/a\"}]}", field: "disks[1].path", contains: "twice")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/a\",\"size\":1}]}", field: "disks[0].size", contains: "unknown field")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/a\",\"readOnly\":\"yes\"}]}", field: "disks[0].readOnly", contains: "boolean")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/c.ovl\",\"backing\":\"/nope\"}]}", field: "disks[0].backing", contains: "no such file")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/no/dir/c.ovl\",\"backing\":\"/k/base\"}]}", field: "disks[0].path", contains: "directory")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/tmp/c.ovl\",\"backing\":\"/k/base\",\"readOnly\":true}]}", field: "disks[0].readOnly", contains: "overlay")
        expectFailure("{\(base),\"disks\":[{\"path\":\"/k/base\"},{\"path\":\"/tmp/c.ovl\",\"backing\":\"/k/base\"}]}", field: "disks[1].backing", contains: "attached as a disk too")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"bridge\"}]}", field: "nets[0].mode", contains: "user or tap")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"tap\"}]}", field: "nets[0].tap", contains: "required")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"tap\",\"tap\":\"../../etc\"}]}", field: "nets[0].tap", contains: "interface name")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"user\",\"tap\":\"t0\"}]}", field: "nets[0].tap", contains: "only for mode tap")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"user\",\"mac\":\"zz:00:00:00:00:00\"}]}", field: "nets[0].mac", contains: "MAC address")
        expectFailure("{\(base),\"nets\":[{\"mode\":\"user\",\"mac\":\"01:00:00:00:00:00\"}]}", field: "nets[0].mac", contains: "multicast")
        expectFailure("{\(base),\"rng\":1}", field: "rng", contains: "boolean")
        expectFailure("{\(base),\"pit\":\"on\"}", field: "pit", contains: "boolean")
        expectFailure("{\(base),\"resources\":{\"cpuWeight\":0}}", field: "resources.cpuWeight", contains: "between 1 and 10000")
        expectFailure("{\(base),\"resources\":{\"cpuWeight\":10001}}", field: "resources.cpuWeight", contains: "between 1 and 10000")
        expectFailure("{\(base),\"resources\":{\"cpuMax\":{\"quotaMicros\":10}}}", field: "resources.cpuMax.quotaMicros", contains: "between 1000")
        expectFailure("{\(base),\"resources\":{\"cpuMax\":{\"quotaMicros\":5000,\"periodMicros\":2000000}}}", field: "resources.cpuMax.periodMicros", contains: "1000000")
        expectFailure("{\(base),\"resources\":{\"memoryMaxMiB\":520}}", field: "resources.memoryMaxMiB", contains: "below guest RAM (512 MiB) plus VMM overhead (32 MiB)")
        expectFailure("{\(base),\"resources\":{\"cpuAffinity\":[7]}}", field: "resources.cpuAffinity", contains: "CPU 7 does not exist")
        expectFailure("{\(base),\"resources\":{\"cpuAffinity\":[1,1]}}", field: "resources.cpuAffinity", contains: "twice")
        expectFailure("{\(base),\"resources\":{\"cpuAffinity\":[]}}", field: "resources.cpuAffinity", contains: "entries")
        expectFailure("{\(base),\"resources\":{\"shares\":1}}", field: "resources.shares", contains: "unknown field")
        expectFailure("{\(base),\"isolation\":{\"seccomp\":\"maybe\"}}", field: "isolation.seccomp", contains: "on, kill, log, off")
        expectFailure("{\(base),\"isolation\":{\"user\":\"no-such-user-vireo\"}}", field: "isolation.user", contains: "no user")
        expectFailure("{\(base),\"isolation\":{\"group\":\"0\"}}", field: "isolation.group", contains: "needs 'isolation.user'")
    }

    @Test func overlaysNeedNotExistYet() throws {
        let vm = try create(#"{"name":"a","kernel":"/k/vmlinux","disks":[{"path":"/tmp/vireo-new.ovl","backing":"/k/base.img"}]}"#)
        #expect(vm.disks == [DiskDefinition(path: "/tmp/vireo-new.ovl", backing: "/k/base.img")])
        let spec = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20).spec(for: vm)
        #expect(spec.devices.disks == [VMSpec.Disk(path: "/tmp/vireo-new.ovl", backing: "/k/base.img")])
    }

    @Test func restoredVMsTakeTheirShapeFromTheSnapshot() throws {
        let vm = try create(#"{"name":"clone","restore":"/tmp","disks":[{"path":"/k/clone.ext4"}],"resources":{"cpuWeight":50}}"#)
        #expect(vm.restore == "/tmp" && vm.kernel == "/k/vmlinux" && vm.cpus == 2 && vm.memoryMiB == 256)
        let spec = VMMLauncher(executable: "/bin/vireo", consoleLogMaxBytes: 1 << 20).spec(for: vm)
        #expect(spec.boot == .restore(directory: "/tmp") && spec.restoreDirectory == "/tmp")
        #expect(spec.machine == VMSpec.MachineShape(cpus: 2, memoryBytes: 256 << 20) && spec.devices.disks.count == 1)
        expectFailure(#"{"name":"c","restore":"/tmp","cpus":4}"#, field: "cpus", contains: "comes from the snapshot")
        expectFailure(#"{"name":"c","restore":"/tmp","kernel":"/k/vmlinux"}"#, field: "kernel", contains: "comes from the snapshot")
        expectFailure(#"{"name":"c","restore":"/tmp","nets":[]}"#, field: "nets", contains: "comes from the snapshot")
        expectFailure(#"{"name":"c","restore":"/tmp","pit":true}"#, field: "pit", contains: "comes from the snapshot")
        expectFailure(#"{"name":"c","restore":"relative"}"#, field: "restore", contains: "absolute path")
        expectFailure(#"{"name":"c","restore":"/no/such/dir"}"#, field: "restore", contains: "no such directory")
        expectFailure(#"{"name":"c","restore":"/"}"#, field: "restore", contains: "checksum does not match")
        expectFailure(#"{"name":"c","restore":"/tmp","disks":[{"path":"/k/a"},{"path":"/k/b"}]}"#, field: "disks", contains: "snapshot has 1")
        #expect(throws: APIError.self) { try validator.update(vm, with: try JSONParser.parse(#"{"memoryMiB":512}"#)) }
        #expect(throws: APIError.self) { try validator.update(vm, with: try JSONParser.parse(#"{"restore":"/tmp"}"#)) }
        #expect(throws: APIError.self) {
            try validator.update(vm, with: try JSONParser.parse(#"{"disks":[{"path":"/k/a"},{"path":"/k/b"}]}"#))
        }
        #expect(try validator.update(vm, with: try JSONParser.parse(#"{"disks":[]}"#)).disks.isEmpty)
    }

    @Test func updatesMergeSettings() throws {
        let vm = try create(#"{"name":"a","kernel":"/k/vmlinux","resources":{"cpuWeight":300,"cpuAffinity":[0]},"isolation":{"seccomp":"log"}}"#)
        let changed = try validator.update(vm, with: try JSONParser.parse(#"{"resources":{"cpuMax":{"quotaMicros":50000}}}"#))
        #expect(changed.resources == ResourceSettings(cpuWeight: 300, cpuMax: .init(quotaMicros: 50000), cpuAffinity: [0]))
        let cleared = try validator.update(changed, with: try JSONParser.parse(#"{"resources":{"cpuWeight":null},"isolation":null}"#))
        #expect(cleared.resources == ResourceSettings(cpuMax: .init(quotaMicros: 50000), cpuAffinity: [0]))
        #expect(cleared.isolation == IsolationDefinition())
        let noDisks = try validator.update(try create(#"{"name":"a","kernel":"/k/vmlinux","disks":[{"path":"/k/d"}]}"#),
                                           with: try JSONParser.parse(#"{"disks":[]}"#))
        #expect(noDisks.disks.isEmpty)
    }

    @Test func storeKeepsEverySetting() throws {
        let directory = NSTemporaryDirectory() + "vireo-store-devices-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let definition = VMDefinition(name: "full", kernel: "/k/vmlinux", restore: "/snap",
                                      disks: [DiskDefinition(path: "/k/d", readOnly: true)],
                                      nets: [NetDefinition(mode: .tap, tap: "t0", mac: "02:00:00:00:00:09")], rng: true,
                                      resources: ResourceSettings(cpuWeight: 7, cpuMax: .init(quotaMicros: 3000, periodMicros: 9000),
                                                                  memoryMaxMiB: 900, cpuAffinity: [1]),
                                      isolation: IsolationDefinition(seccomp: "off", jail: true, user: "nobody"))
        try Store(path: directory + "/vireo.sqlite").insert(VMRecord(definition: definition))
        let loaded = try #require(try Store(path: directory + "/vireo.sqlite").vm(named: "full"))
        #expect(loaded.definition == definition)
        try Store(path: directory + "/vireo.sqlite").insert(VMRecord(definition: VMDefinition(name: "plain", kernel: "/k/vmlinux")))
        #expect(try Store(path: directory + "/vireo.sqlite").vm(named: "plain")?.definition == VMDefinition(name: "plain", kernel: "/k/vmlinux"))
    }
}
