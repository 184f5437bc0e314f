import GRDB

/// The schema, as an ordered list of migrations. Never edit a shipped migration: add a new one.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: vms and events") { db in
            try db.create(table: "vms") { t in
                t.primaryKey("name", .text)
                t.column("kernel", .text).notNull()
                t.column("initrd", .text)
                t.column("cmdline", .text).notNull()
                t.column("cpus", .integer).notNull()
                t.column("memoryMiB", .integer).notNull()
                t.column("autostart", .boolean).notNull().defaults(to: false)
                t.column("restartPolicy", .text).notNull().defaults(to: "no")
                t.column("state", .text).notNull()
                t.column("pid", .integer)
                t.column("pidStartTime", .integer)
                t.column("shimPid", .integer)
                t.column("startedAt", .datetime)
                t.column("stateChangedAt", .datetime).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
                t.column("restartCount", .integer).notNull().defaults(to: 0)
                t.column("lastExitStatus", .integer)
                t.column("lastExitReason", .text)
                t.column("lastExitAt", .datetime)
            }
            try db.create(table: "events") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time", .datetime).notNull()
                t.column("vm", .text)
                t.column("type", .text).notNull()
                t.column("state", .text)
                t.column("message", .text).notNull()
            }
        }
        migrator.registerMigration("v2: events by VM") { db in
            try db.create(index: "events_vm", on: "events", columns: ["vm", "id"])
        }
        migrator.registerMigration("v3: devices, resources, isolation, restore") { db in
            try db.alter(table: "vms") { t in
                t.add(column: "restore", .text)
                // Lists and settings are JSON text (GRDB encodes nested Codable values as JSON).
                t.add(column: "disks", .text).notNull().defaults(to: "[]")
                t.add(column: "nets", .text).notNull().defaults(to: "[]")
                t.add(column: "rng", .boolean).notNull().defaults(to: false)
                t.add(column: "resources", .text).notNull().defaults(to: "{}")
                t.add(column: "isolation", .text).notNull().defaults(to: "{}")
            }
        }
        migrator.registerMigration("v4: image VMs") { db in
            try db.alter(table: "vms") { t in
                t.add(column: "image", .text)  // JSON; NULL: a kernel VM
            }
        }
        migrator.registerMigration("v5: the in-kernel PIT") { db in
            try db.alter(table: "vms") { t in
                t.add(column: "pit", .boolean)  // NULL: the VMM decides
            }
        }
        return migrator
    }

    /// Identifiers in order, for tests and diagnostics.
    static var identifiers: [String] { migrator.migrations }
}
