import Foundation
import GRDB
import Testing
@testable import Manager

/// The SQLite store: migrations, records, events, durability across reopen.
@Suite struct StoreTests {
    private func temporaryPath() -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-store-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("vireo.sqlite").path
    }

    @Test func migrationsApplyOnceAndInOrder() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        #expect(Store.knownMigrations == ["v1: vms and events", "v2: events by VM", "v3: devices, resources, isolation, restore", "v4: image VMs",
                                         "v5: the in-kernel PIT"])
        let store = try Store(path: path)
        #expect(try store.appliedMigrations() == Store.knownMigrations.sorted())
        // Reopening an up-to-date database applies nothing and keeps the data.
        try store.insert(VMRecord(definition: VMDefinition(name: "keep", kernel: "/k")))
        let reopened = try Store(path: path)
        #expect(try reopened.appliedMigrations() == Store.knownMigrations.sorted())
        #expect(try reopened.allVMs().map(\.name) == ["keep"])
    }

    /// A database written by a daemon before v3 (no devices, no settings) opens with their defaults.
    @Test func aV2DatabaseMigratesWithItsVMs() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let old = try DatabaseQueue(path: path)
        try Migrations.migrator.migrate(old, upTo: "v2: events by VM")
        try old.write { db in
            try db.execute(sql: """
                INSERT INTO vms (name, kernel, cmdline, cpus, memoryMiB, autostart, restartPolicy, state,
                                 stateChangedAt, createdAt, updatedAt, restartCount)
                VALUES ('old', '/k/vmlinux', 'console=ttyS0', 2, 128, 1, 'always', 'stopped',
                        '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', 0)
                """)
        }
        try old.close()
        let store = try Store(path: path)
        let vm = try #require(try store.vm(named: "old"))
        #expect(vm.definition == VMDefinition(name: "old", kernel: "/k/vmlinux", cpus: 2, memoryMiB: 128, autostart: true,
                                              restartPolicy: .always))
        #expect(vm.state == .stopped)
    }

    /// A v3 database (kernel VMs only) opens with `image` absent; an image VM's section round-trips.
    @Test func aV3DatabaseMigratesAndImageSectionsRoundTrip() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let old = try DatabaseQueue(path: path)
        try Migrations.migrator.migrate(old, upTo: "v3: devices, resources, isolation, restore")
        try old.write { db in
            try db.execute(sql: """
                INSERT INTO vms (name, kernel, cmdline, cpus, memoryMiB, autostart, restartPolicy, state,
                                 stateChangedAt, createdAt, updatedAt, restartCount, disks)
                VALUES ('old', '/k/vmlinux', 'console=ttyS0', 1, 128, 0, 'no', 'stopped',
                        '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', 0,
                        '[{"path":"/d/root.ext4","readOnly":false}]')
                """)
        }
        try old.close()
        let store = try Store(path: path)
        let vm = try #require(try store.vm(named: "old"))
        #expect(vm.image == nil && vm.disks.map(\.path) == ["/d/root.ext4"])
        #expect(vm.pit == nil, "rows older than v5 leave the PIT to the VMM")
        try store.insert(VMRecord(definition: VMDefinition(name: "nopit", kernel: "/k/vmlinux", pit: false)))
        #expect(try Store(path: path).vm(named: "nopit")?.definition.pit == false)
        let image = ImageDefinition(reference: "/srv/app-oci", command: ["sh", "-c", "exit 7"], entrypoint: "", env: ["A=b"],
                                    workdir: "/tmp", user: "1000:50")
        try store.insert(VMRecord(definition: VMDefinition(name: "job", kernel: "/k/vmlinux", cmdline: VMDefinition.imageCmdline, image: image)))
        #expect(try Store(path: path).vm(named: "job")?.definition.image == image)
    }

    @Test func recordsRoundTripAndDuplicatesAreConflicts() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try Store(path: path)
        var vm = VMRecord(definition: VMDefinition(name: "web", kernel: "/k/vmlinux", initrd: "/k/initrd", cmdline: "quiet",
                                                   cpus: 2, memoryMiB: 64, autostart: true, restartPolicy: .always))
        try store.insert(vm)
        do {
            try store.insert(vm)
            Issue.record("a duplicate name was stored")
        } catch let error as APIError {
            #expect(error.status == 409 && error.code == "already_exists")
        }
        vm.state = .running
        vm.pid = 1234
        vm.pidStartTime = 987654321
        vm.startedAt = Date()
        vm.lastExitStatus = 137
        vm.lastExitReason = "the VMM was killed by signal 9"
        try store.save(vm)
        let loaded = try #require(try Store(path: path).vm(named: "web"))
        #expect(loaded.definition == vm.definition)
        #expect(loaded.state == .running && loaded.pid == 1234 && loaded.pidStartTime == 987654321)
        #expect(loaded.lastExitStatus == 137 && loaded.lastExitReason == vm.lastExitReason)
        #expect(abs(loaded.startedAt!.timeIntervalSince(vm.startedAt!)) < 0.01)
        try store.delete(name: "web")
        #expect(try store.allVMs().isEmpty)
    }

    @Test func eventsAreNumberedFilteredAndPruned() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try Store(path: path)
        let first = try store.append(VMEvent(vm: "a", type: "created", state: .defined, message: "m"))
        let second = try store.append(VMEvent(vm: "b", type: "created", state: .defined, message: "m"))
        try store.append(VMEvent(vm: nil, type: "daemon-started", state: nil, message: "m"))
        #expect(first.id == 1 && second.id == 2)
        #expect(try store.events(after: 0).count == 3)
        #expect(try store.events(after: 1).map(\.id) == [2, 3])
        #expect(try store.events(after: 0, vm: "a").map(\.type) == ["created"])
        #expect(try store.lastEventID() == 3)
    }

    /// A pooled start's one commit: the record and its `starting` and `started` events together, in order.
    @Test func aRecordAndSeveralEventsAreSavedTogether() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try Store(path: path)
        var vm = VMRecord(definition: VMDefinition(name: "clone", kernel: "/k/vmlinux", cpus: 1, memoryMiB: 64))
        try store.insert(vm)
        try store.append(VMEvent(vm: "clone", type: "created", state: .defined, message: "m"))
        vm.state = .running
        vm.pid = 4321
        let stored = try store.save(vm, appending: [VMEvent(vm: "clone", type: "starting", state: .starting, message: "s"),
                                                    VMEvent(vm: "clone", type: "started", state: .running, message: "r")])
        #expect(stored.map(\.id) == [2, 3] && stored.map(\.type) == ["starting", "started"])
        let reopened = try Store(path: path)
        #expect(try reopened.vm(named: "clone")?.state == .running && reopened.vm(named: "clone")?.pid == 4321)
        #expect(try reopened.events(after: 0, vm: "clone").map(\.type) == ["created", "starting", "started"])
    }
}
