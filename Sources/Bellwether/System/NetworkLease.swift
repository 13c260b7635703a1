#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// The Redis lease in the master: the pure `LeaseCore`, its connection, and
/// the deadline pipes to the scheduler's guard. The master polls `pollEntry`,
/// calls `ready`/`tick`, and performs the actions that come back (grants,
/// guard deadlines, log lines); commands to Redis are sent here.
final class NetworkLease {
    let address: RedisAddress
    let timings: LeaseTimings
    private(set) var core: LeaseCore
    private let connection: RedisConnection
    private var inFlight: LeaseCommand?
    /// Write ends of the deadline pipes, by the scheduler they guard.
    private var guardPipes: [WorkerRef: Int32] = [:]

    init(address: RedisAddress, timings: LeaseTimings) {
        self.address = address
        self.timings = timings
        core = LeaseCore(holder: Self.holderID(), timings: timings)
        connection = RedisConnection(address: address)
    }

    deinit { for fd in guardPipes.values { Sys.closeFile(fd) } }

    /// `host/pid/nonce`: unique per master, readable in `redis-cli GET`.
    static func holderID() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .filter { $0 != "|" && !$0.isWhitespace }
        let nonce = String(UInt32.random(in: .min ... .max), radix: 16)
        return "\(host.isEmpty ? "host" : host)/\(getpid())/\(nonce)"
    }

    /// At start: a PING through AUTH and SELECT, so that a wrong password or
    /// database is one clear error. An unreachable Redis is not an error: the
    /// master runs all-`worker` and retries.
    func checkCredentials() throws(BellwetherError) {
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

    var nextDeadline: Instant? { [core.nextDeadline(), connection.deadline].compactMap { $0 }.min() }

    func ready(_ revents: Int16, at now: Instant) -> [LeaseAction] {
        guard let outcome = connection.handle(revents, at: now) else { return [] }
        return handle(event(for: outcome), at: now)
    }

    func tick(at now: Instant) -> [LeaseAction] {
        if let outcome = connection.expire(at: now) { return handle(event(for: outcome), at: now) }
        return handle(.tick, at: now)
    }

    /// Feeds `event` to the core and sends what it asks for; returns the rest.
    func handle(_ event: LeaseEvent, at now: Instant) -> [LeaseAction] {
        var pending = [event]
        var actions: [LeaseAction] = []
        while !pending.isEmpty {
            for action in core.handle(pending.removeFirst(), at: now) {
                guard case .send(let command) = action else {
                    if case .guardDeadline(let deadline) = action { tellGuards(deadline) }
                    actions.append(action)
                    continue
                }
                inFlight = command
                let request = LeaseScripts.request(command, key: address.key, holder: core.holder, ttl: timings.ttl)
                if let outcome = connection.send(request, at: now, timeout: timings.renewInterval) {
                    pending.append(self.event(for: outcome))
                }
            }
        }
        return actions
    }

    private func event(for outcome: RedisConnection.Outcome) -> LeaseEvent {
        switch outcome {
        case .reply(let value):
            guard let command = inFlight else { return .tick }
            switch LeaseScripts.decode(value, for: command) {
            case .success(let reply): return .reply(reply)
            case .failure(let error): return .failed(error.description)
            }
        case .failed(let reason), .rejected(let reason):
            return .failed(reason)
        }
    }

    // MARK: The scheduler's guard

    /// A pipe for a new scheduler's guard, primed with the current deadline.
    /// Returns the read end, which the spawn passes on and the caller closes.
    func openGuardPipe(for ref: WorkerRef) -> Int32? {
        var ends: [Int32] = [-1, -1]
        guard bw_pipe_cloexec(&ends, 1) == 0 else { return nil }
        guardPipes[ref] = ends[1]
        if let deadline = core.renewDeadline { write(deadline, to: ends[1]) }
        return ends[0]
    }

    /// The scheduler was reaped: its guard has nothing more to hear.
    func closeGuardPipe(for ref: WorkerRef) {
        if let fd = guardPipes.removeValue(forKey: ref) { Sys.closeFile(fd) }
    }

    private func tellGuards(_ deadline: Instant) {
        for fd in guardPipes.values { write(deadline, to: fd) }
    }

    /// One 8-byte record; a full pipe (a stopped guard) loses nothing that
    /// matters, since a later deadline is always sent again.
    private func write(_ deadline: Instant, to fd: Int32) {
        try? Sys.writeAll(fd, withUnsafeBytes(of: deadline.nanoseconds) { Array($0) })
    }
}
