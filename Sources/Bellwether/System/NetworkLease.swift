#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Redis lease's shell: its connection and the deadline pipes to the
/// scheduler's guard. The decisions are `LeaseCore`'s, inside `Supervision`;
/// this sends the commands it asks for and turns replies, failures and
/// timeouts into `LeaseEvent`s.
final class NetworkLease {
    let address: RedisAddress
    let timings: LeaseTimings
    /// `host/pid/nonce`: this master's value in the key.
    let holder: String
    private let connection: RedisConnection
    private var inFlight: LeaseCommand?
    /// Write ends of the deadline pipes, by the scheduler they guard.
    private var guardPipes: [WorkerRef: Int32] = [:]

    init(address: RedisAddress, timings: LeaseTimings) {
        self.address = address
        self.timings = timings
        holder = Self.holderID()
        connection = RedisConnection(address: address)
    }

    deinit { for fd in guardPipes.values { Sys.closeFile(fd) } }

    /// `host/pid/nonce`: unique per master, readable in `redis-cli GET`.
    static func holderID() -> String {
        let host = Sys.calls.hostName().filter { $0 != "|" && !$0.isWhitespace }
        let nonce = String(UInt32.random(in: .min ... .max), radix: 16)
        return "\(host.isEmpty ? "host" : host)/\(Sys.calls.processID())/\(nonce)"
    }

    /// At start: for `rediss://`, that libssl loads; then a PING through the
    /// TLS handshake, AUTH and SELECT, so that a certificate that fails
    /// verification, a wrong password or database is one clear error. An
    /// unreachable Redis is not an error: the master runs all-`worker` and
    /// retries.
    func checkCredentials() throws(BellwetherError) {
        if address.tls != nil, let reason = TLSSession.unavailableReason() { throw .tlsUnavailable(reason) }
        var now = Sys.monotonicNow()
        guard connection.send(["PING"], at: now, timeout: timings.renewInterval) == nil else { return }
        while let events = connection.pollEvents, let deadline = connection.deadline {
            let revents = Sys.wait([(connection.fd, events)], timeout: deadline - now)[0]
            now = Sys.monotonicNow()
            switch connection.handle(revents, at: now) ?? connection.expire(at: now) {
            case .rejected(let reason)?: throw .leaseRejected(reason)
            case .reply?, .failed?: return
            case nil: continue
            }
        }
    }

    var pollEntry: (fd: Int32, events: Int16)? { connection.pollEvents.map { (connection.fd, $0) } }

    /// When the command in flight times out.
    var nextDeadline: Instant? { connection.deadline }

    /// Sends `command`; a failure known at once comes back as its event.
    func send(_ command: LeaseCommand, at now: Instant) -> LeaseEvent? {
        inFlight = command
        let request = LeaseScripts.request(command, key: address.key, holder: holder, ttl: timings.ttl)
        return connection.send(request, at: now, timeout: timings.renewInterval).map(event(for:))
    }

    /// The reply or failure the connection's readiness brought, if complete.
    func ready(_ revents: Int16, at now: Instant) -> LeaseEvent? {
        connection.handle(revents, at: now).map(event(for:))
    }

    /// A command in flight past its deadline fails.
    func expire(at now: Instant) -> LeaseEvent? { connection.expire(at: now).map(event(for:)) }

    private func event(for outcome: RedisConnection.Outcome) -> LeaseEvent {
        switch outcome {
        case .reply(let value):
            guard let command = inFlight else { return .tick }
            switch LeaseScripts.decode(value, for: command) {
            case .success(let reply): return .reply(reply)
            case .failure(let error): return .failed(error.description)
            }
        case .failed(let reason):
            return .failed(reason)
        case .rejected(let reason):
            return .rejected(reason)
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
