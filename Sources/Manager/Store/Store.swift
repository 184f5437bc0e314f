import Foundation
import GRDB

extension VMRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "vms"
}

extension VMEvent: FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "events"
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

extension VMState: DatabaseValueConvertible {}
extension RestartPolicy: DatabaseValueConvertible {}

/// VM definitions, their state and lifecycle events in SQLite (`<state-dir>/vireo.sqlite`).
///
/// WAL with `synchronous = FULL`: a committed change survives a crash of the daemon or of the host.
public final class Store: Sendable {
    private let pool: DatabasePool
    /// Events kept; older ones are pruned.
    public static let eventLimit: Int64 = 10_000

    public init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(5)
        pool = try DatabasePool(path: path, configuration: configuration)
        try Migrations.migrator.migrate(pool)
    }

    /// Migrations applied to this database, in order.
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try Migrations.migrator.appliedIdentifiers(db) }.sorted()
    }

    /// Identifiers of all migrations the code knows.
    public static var knownMigrations: [String] { Migrations.identifiers }

    public func allVMs() throws -> [VMRecord] {
        try pool.read { db in try VMRecord.order(Column("name")).fetchAll(db) }
    }

    public func vm(named name: String) throws -> VMRecord? {
        try pool.read { db in try VMRecord.fetchOne(db, key: name) }
    }

    /// Inserts a new VM; a name already taken is a 409.
    public func insert(_ record: VMRecord) throws {
        do {
            try pool.write { db in try record.insert(db) }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
            throw APIError.duplicate(record.name)
        }
    }

    public func save(_ record: VMRecord) throws {
        try pool.write { db in try record.update(db) }
    }

    public func delete(name: String) throws {
        _ = try pool.write { db in try VMRecord.deleteOne(db, key: name) }
    }

    /// Appends an event and returns it with its id; prunes the oldest past `eventLimit`.
    @discardableResult
    public func append(_ event: VMEvent) throws -> VMEvent {
        try pool.write { db in try Store.insert(event, db) }
    }

    /// `save` and `append` in one transaction (one sync of the log instead of two): the record's
    /// change and its event are stored together or not at all.
    public func save(_ record: VMRecord, appending event: VMEvent) throws -> VMEvent {
        try pool.write { db in
            try record.update(db)
            return try Store.insert(event, db)
        }
    }

    /// `save` and several events in one transaction, in order.
    public func save(_ record: VMRecord, appending events: [VMEvent]) throws -> [VMEvent] {
        try pool.write { db in
            try record.update(db)
            return try events.map { try Store.insert($0, db) }
        }
    }

    private static func insert(_ event: VMEvent, _ db: Database) throws -> VMEvent {
        var event = event
        try event.insert(db)
        if let id = event.id, id % 100 == 0 {
            try db.execute(sql: "DELETE FROM events WHERE id <= ?", arguments: [id - Store.eventLimit])
        }
        return event
    }

    /// Events after `id` (oldest first), optionally of one VM.
    public func events(after id: Int64, vm: String? = nil, limit: Int = 10_000) throws -> [VMEvent] {
        try pool.read { db in
            var request = VMEvent.filter(Column("id") > id)
            if let vm { request = request.filter(Column("vm") == vm) }
            return try request.order(Column("id")).limit(limit).fetchAll(db)
        }
    }

    /// The id of the newest event (0 when there is none).
    public func lastEventID() throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM events") ?? 0 }
    }
}
