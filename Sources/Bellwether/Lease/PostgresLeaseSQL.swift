/// The SQL behind each `LeaseCommand` for a PostgreSQL lease, and the
/// decoding of its answer: the same commands and replies as the Redis
/// lease's scripts (`LeaseScripts`), so that one `LeaseCore` decides for both.
///
/// The lease is a row of a table, as River and Oban elect a leader, not a
/// session advisory lock: a session lock is lost silently behind PgBouncer's
/// transaction pooling, and outlives a client the server has forgotten. Each
/// command is one statement in its own transaction, through the simple query
/// protocol (no prepared statement), so it works the same through PgBouncer
/// in transaction mode. Expiry is computed by the **database's** clock,
/// `now()`, so the supervisors' clocks never meet.
///
/// The row holds `holder|fence` while held, NULL once released cleanly (the
/// tombstone), and the fence, which only rises: an acquisition takes
/// `max(fence + 1, floor)`, and the row is never deleted, so the fence
/// survives a server restart, and a failover to a replica that has the
/// last committed row.
enum PostgresLeaseSQL {
    /// The table, for those who create schema by migration (with `TABLE` the
    /// name given by `?table=`, `bellwether_lease` by default):
    static func createTable(_ table: String) -> String {
        """
        CREATE TABLE IF NOT EXISTS \(quoted(table)) (
            name text PRIMARY KEY,
            value text,
            fence bigint NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    }

    /// One row, `t` or `f`: whether the table exists (to the user connecting).
    static func tableExists(_ table: String) -> String {
        "SELECT to_regclass(\(literal(quoted(table)))) IS NOT NULL"
    }

    /// The statement for `command`.
    static func query(_ command: LeaseCommand, table: String, key: String, holder: String, ttl: Duration) -> String {
        let t = quoted(table), k = literal(key)
        let expiry = "now() + \(max(1, ttl.nanoseconds / 1_000_000)) * interval '1 millisecond'"
        // What the row holds now, as the Redis lease's GET would see the key.
        let current = "(SELECT CASE WHEN value IS NULL THEN 'released' WHEN expires_at > now() THEN value END "
            + "FROM \(t) WHERE name = \(k))"
        switch command {
        case .acquire(let floor):
            // `old` reads the row as the statement's snapshot has it, before
            // the upsert (which, on a conflict, sees the latest committed row
            // and takes it only if released or expired): it tells whether
            // the acquisition found a tombstone.
            let first = max(floor, 1)
            let fence = "GREATEST(l.fence + 1, EXCLUDED.fence)"
            return """
                WITH old AS (SELECT value FROM \(t) WHERE name = \(k)), \
                up AS (INSERT INTO \(t) AS l (name, value, fence, expires_at) \
                VALUES (\(k), \(literal(holder + "|\(first)")), \(first), \(expiry)) \
                ON CONFLICT (name) DO UPDATE SET fence = \(fence), \
                value = \(literal(holder + "|")) || (\(fence))::text, expires_at = EXCLUDED.expires_at \
                WHERE l.value IS NULL OR l.expires_at <= now() RETURNING fence) \
                SELECT (SELECT fence FROM up), (SELECT true FROM old), (SELECT value IS NULL FROM old), \(current)
                """
        case .renew(let value):
            return """
                WITH r AS (UPDATE \(t) SET expires_at = \(expiry) \
                WHERE name = \(k) AND value = \(literal(value)) AND expires_at > now() RETURNING 1) \
                SELECT (SELECT count(*) FROM r), \(current)
                """
        case .release(let value):
            return """
                WITH r AS (UPDATE \(t) SET value = NULL, expires_at = now() \
                WHERE name = \(k) AND value = \(literal(value)) AND expires_at > now() RETURNING 1) \
                SELECT (SELECT count(*) FROM r), \(current)
                """
        }
    }

    /// The reply to `command` from its one row, or why it is not one.
    static func decode(_ rows: [[String?]], for command: LeaseCommand) -> Result<LeaseReply, PGWireError> {
        let unexpected = PGWireError(description: "unexpected answer to the lease's statement")
        guard rows.count == 1 else { return .failure(unexpected) }
        let row = rows[0]
        switch command {
        case .acquire:
            guard row.count == 4 else { return .failure(unexpected) }
            if let text = row[0] {
                guard let fence = Int64(text) else { return .failure(unexpected) }
                // Clean: the row was a tombstone, as a released Redis key is.
                return .success(.acquired(fence: fence, clean: row[1] == "t" && row[2] == "t"))
            }
            // NULL: the row this statement's snapshot saw was free, but a
            // concurrent acquisition committed first.
            return .success(.heldBy(row[3] ?? "(another supervisor, acquiring at this moment)"))
        case .renew, .release:
            guard row.count == 2, let count = row[0].flatMap({ Int($0) }) else { return .failure(unexpected) }
            if count == 1 { return .success(command.isRenew ? .renewed : .released) }
            return .success(.notOurs(row[1]))
        }
    }

    /// `sql` in one implicit transaction whose lock and statement timeouts
    /// are `timeout`, the time the client waits: a statement that a lock
    /// holds up (a migration's ALTER TABLE, a stuck synchronous standby) ends
    /// on the server when the client gives up on it, rather than every
    /// supervisor leaving one more blocked backend behind every R.
    static func bounded(_ sql: String, by timeout: Duration) -> String {
        let milliseconds = max(1, timeout.nanoseconds / 1_000_000)
        return "SET LOCAL lock_timeout = \(milliseconds); SET LOCAL statement_timeout = \(milliseconds); " + sql
    }

    /// One row, `t` or `f`: whether the lease's user may use the table.
    static func mayUse(_ table: String) -> String {
        "SELECT has_table_privilege(\(literal(quoted(table))), 'SELECT, INSERT, UPDATE')"
    }

    /// A name given by `?table=`, quoted part by part (`schema.table`).
    static func quoted(_ table: String) -> String {
        table.split(separator: ".").map { (try? PGWire.identifier(String($0))) ?? "\"\"" }.joined(separator: ".")
    }

    /// A string literal; the values here (key, holder) hold no NUL.
    static func literal(_ text: String) -> String {
        (try? PGWire.literal(text)) ?? "''"
    }
}

extension LeaseCommand {
    var isRenew: Bool { if case .renew = self { true } else { false } }
}
