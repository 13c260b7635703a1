#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a store's connection made of a command: the reply, a failure (the
/// store unreachable, a timeout: retried), or a rejection (a configuration
/// error: at start, the master exits 77).
enum LeaseStoreOutcome: Equatable {
    case reply(Result<LeaseReply, LeaseStoreError>)
    case failed(String)
    case rejected(String)
}

struct LeaseStoreError: Error, Equatable, CustomStringConvertible {
    var description: String
}

/// One connection to a lease's store, driven by the master's poll loop.
protocol LeaseStore: AnyObject {
    var fd: Int32 { get }
    var pollEvents: Int16? { get }
    var deadline: Instant? { get }
    /// A command; the outcome comes from `handle` or `expire`, or at once.
    func send(_ command: LeaseCommand, holder: String, ttl: Duration, at now: Instant,
              timeout: Duration) -> LeaseStoreOutcome?
    /// The start's check of address and credentials: PING, or a session.
    func check(at now: Instant, timeout: Duration) -> LeaseStoreOutcome?
    func handle(_ revents: Int16, at now: Instant) -> LeaseStoreOutcome?
    func expire(at now: Instant) -> LeaseStoreOutcome?
    func close()
}

/// The network lease's shell: its store's connection and the deadline pipes
/// to the scheduler's guard. The decisions are `LeaseCore`'s, inside
/// `Supervision`; this sends the commands it asks for and turns replies,
/// failures and timeouts into `LeaseEvent`s.
final class NetworkLease {
    let address: LeaseStoreAddress
    let timings: LeaseTimings
    /// `host/pid/nonce`: this master's value in the key.
    let holder: String
    private let store: LeaseStore
    /// Write ends of the deadline pipes, by the scheduler they guard.
    private var guardPipes: [WorkerRef: Int32] = [:]

    init(address: LeaseStoreAddress, timings: LeaseTimings) {
        self.address = address
        self.timings = timings
        holder = Self.holderID()
        store = switch address {
        case .redis(let redis): RedisLeaseStore(address: redis)
        case .postgres(let postgres): PostgresLeaseStore(address: postgres)
        }
    }

    deinit { for fd in guardPipes.values { Sys.closeFile(fd) } }

    /// `host/pid/nonce`: unique per master, readable in the store.
    static func holderID() -> String {
        let host = Sys.calls.hostName().filter { $0 != "|" && !$0.isWhitespace }
        let nonce = String(UInt32.random(in: .min ... .max), radix: 16)
        return "\(host.isEmpty ? "host" : host)/\(Sys.calls.processID())/\(nonce)"
    }

    /// At start: that libssl loads when the lease needs TLS; then a PING
    /// through the TLS handshake, AUTH and SELECT, or a PostgreSQL session
    /// with the lease table, so that a certificate that fails verification, a
    /// wrong password, database or table is one clear error. An unreachable
    /// store is not an error: the master runs all-`worker` and retries.
    func checkCredentials() throws(BellwetherError) {
        if address.needsTLS, let reason = TLSSession.unavailableReason() { throw .tlsUnavailable(reason) }
        var now = Sys.monotonicNow()
        var outcome = store.check(at: now, timeout: max(timings.renewInterval, .seconds(2)))
        while outcome == nil, let events = store.pollEvents, let deadline = store.deadline {
            let revents = Sys.wait([(store.fd, events)], timeout: deadline - now)[0]
            now = Sys.monotonicNow()
            outcome = store.handle(revents, at: now) ?? store.expire(at: now)
        }
        if case .rejected(let reason)? = outcome { throw .leaseRejected(reason) }
    }

    var pollEntry: (fd: Int32, events: Int16)? { store.pollEvents.map { (store.fd, $0) } }

    /// When the command in flight times out.
    var nextDeadline: Instant? { store.deadline }

    /// Sends `command`; a failure known at once comes back as its event.
    func send(_ command: LeaseCommand, at now: Instant) -> LeaseEvent? {
        store.send(command, holder: holder, ttl: timings.ttl, at: now, timeout: timings.renewInterval)
            .map(event(for:))
    }

    /// The reply or failure the connection's readiness brought, if complete.
    func ready(_ revents: Int16, at now: Instant) -> LeaseEvent? {
        store.handle(revents, at: now).map(event(for:))
    }

    /// At the master's exit, once the lease is released: the session ended politely.
    func close() { store.close() }

    /// A command in flight past its deadline fails.
    func expire(at now: Instant) -> LeaseEvent? { store.expire(at: now).map(event(for:)) }

    private func event(for outcome: LeaseStoreOutcome) -> LeaseEvent {
        switch outcome {
        case .reply(.success(let reply)): .reply(reply)
        case .reply(.failure(let error)): .failed(error.description)
        case .failed(let reason): .failed(reason)
        case .rejected(let reason): .rejected(reason)
        }
    }

    // MARK: The scheduler's guard

    /// A pipe for a new scheduler's guard, primed with `deadline`. Returns
    /// the read end, which the spawn passes on and the caller closes.
    func openGuardPipe(for ref: WorkerRef, deadline: Instant?) -> Result<Int32, SystemCallError> {
        Sys.calls.pipe(nonBlockingWrite: true).map { ends in
            guardPipes[ref] = ends.write
            if let deadline { write(deadline, to: ends.write) }
            return ends.read
        }
    }

    /// The scheduler was reaped: its guard has nothing more to hear.
    func closeGuardPipe(for ref: WorkerRef) {
        if let fd = guardPipes.removeValue(forKey: ref) { Sys.closeFile(fd) }
    }

    func tellGuards(_ deadline: Instant) {
        for fd in guardPipes.values { write(deadline, to: fd) }
    }

    /// One 8-byte record; a full pipe (a stopped guard) loses nothing that
    /// matters, since a later deadline is always sent again.
    private func write(_ deadline: Instant, to fd: Int32) {
        try? Sys.writeAll(fd, withUnsafeBytes(of: deadline.nanoseconds) { Array($0) })
    }
}
