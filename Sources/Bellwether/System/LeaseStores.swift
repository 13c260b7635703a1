/// The two network leases' stores behind one `LeaseStore`: each turns a
/// `LeaseCommand` into what its store runs (`LeaseScripts`,
/// `PostgresLeaseSQL`) and the answer back into a `LeaseReply`.

/// One connection to a store, as both stores drive theirs.
protocol StoreConnection: AnyObject {
    associatedtype Outcome
    var fd: Int32 { get }
    var pollEvents: Int16? { get }
    var deadline: Instant? { get }
    func handle(_ revents: Int16, at now: Instant) -> Outcome?
    func expire(at now: Instant) -> Outcome?
    func close()
}

extension RedisConnection: StoreConnection {}
extension PostgresConnection: StoreConnection {}

/// A store whose readiness, deadlines and answers are its connection's.
protocol ConnectionStore: LeaseStore {
    associatedtype Connection: StoreConnection
    var connection: Connection { get }
    /// What the connection's outcome means for the lease.
    func outcome(_ outcome: Connection.Outcome) -> LeaseStoreOutcome
}

extension ConnectionStore {
    var fd: Int32 { connection.fd }
    var pollEvents: Int16? { connection.pollEvents }
    var deadline: Instant? { connection.deadline }

    func handle(_ revents: Int16, at now: Instant) -> LeaseStoreOutcome? {
        connection.handle(revents, at: now).map(outcome)
    }

    func expire(at now: Instant) -> LeaseStoreOutcome? { connection.expire(at: now).map(outcome) }

    func close() { connection.close() }
}

/// Redis: one EVAL per command on a `RedisConnection`.
final class RedisLeaseStore: ConnectionStore {
    let connection: RedisConnection
    private let key: String
    /// The command whose reply is awaited; nil for the start's PING.
    private var inFlight: LeaseCommand?

    init(address: RedisAddress) {
        connection = RedisConnection(address: address)
        key = address.key
    }

    func send(_ command: LeaseCommand, holder: String, ttl: Duration, at now: Instant,
              timeout: Duration) -> LeaseStoreOutcome? {
        inFlight = command
        let request = LeaseScripts.request(command, key: key, holder: holder, ttl: ttl)
        return connection.send(request, at: now, timeout: timeout).map(outcome)
    }

    func check(at now: Instant, timeout: Duration) -> LeaseStoreOutcome? {
        inFlight = nil
        return connection.send(["PING"], at: now, timeout: timeout).map(outcome)
    }

    func handle(_ revents: Int16, at now: Instant) -> LeaseStoreOutcome? {
        connection.handle(revents, at: now).map(outcome)
    }

    func expire(at now: Instant) -> LeaseStoreOutcome? { connection.expire(at: now).map(outcome) }

    func close() { connection.close() }

    func outcome(_ outcome: RedisConnection.Outcome) -> LeaseStoreOutcome {
        switch outcome {
        case .reply(let value):
            guard let command = inFlight else { return .reply(.failure(LeaseStoreError(description: "no command"))) }
            return .reply(LeaseScripts.decode(value, for: command).mapError { LeaseStoreError(description: $0.description) })
        case .failed(let reason): return .failed(reason)
        case .rejected(let reason): return .rejected(reason)
        }
    }
}

/// PostgreSQL: one statement per command on a `PostgresConnection`.
final class PostgresLeaseStore: ConnectionStore {
    let connection: PostgresConnection
    private let address: PostgresAddress
    /// The command whose answer is awaited; nil for the start's check.
    private var inFlight: LeaseCommand?
    private var checking = false

    init(address: PostgresAddress) {
        self.address = address
        connection = PostgresConnection(address: address)
    }

    func send(_ command: LeaseCommand, holder: String, ttl: Duration, at now: Instant,
              timeout: Duration) -> LeaseStoreOutcome? {
        inFlight = command
        checking = false
        let sql = PostgresLeaseSQL.query(command, table: address.table, key: address.key, holder: holder, ttl: ttl)
        return connection.send(sql, at: now, timeout: timeout).map(outcome)
    }

    /// A session, the lease table made sure of, and the right to use it.
    func check(at now: Instant, timeout: Duration) -> LeaseStoreOutcome? {
        inFlight = nil
        checking = true
        return connection.send(PostgresLeaseSQL.mayUse(address.table), at: now, timeout: timeout).map(outcome)
    }

    func outcome(_ outcome: PostgresConnection.Outcome) -> LeaseStoreOutcome {
        switch outcome {
        case .rows(let rows):
            if checking, rows.first?.first == "f" {
                return .rejected("user \(address.user ?? "?") may not use the lease table \(address.table): "
                                 + "grant it SELECT, INSERT, UPDATE")
            }
            guard let command = inFlight else { return .reply(.failure(LeaseStoreError(description: "no command"))) }
            return .reply(PostgresLeaseSQL.decode(rows, for: command)
                .mapError { LeaseStoreError(description: "postgres: \($0.description)") })
        case .failed(let reason): return .failed(reason)
        case .rejected(let reason): return .rejected(reason)
        }
    }
}
