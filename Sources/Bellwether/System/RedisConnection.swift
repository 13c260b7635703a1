#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// One non-blocking TCP connection to Redis, driven by the master's poll loop:
/// one request at a time, each with a deadline. A fresh connection sends AUTH
/// and SELECT ahead of the request, pipelined; with `rediss://` they wait for
/// the TLS handshake, and every byte then goes through the `TLSSession`. On
/// any failure or timeout the connection is dropped; the next request opens
/// a new one.
///
/// A host name is resolved (getaddrinfo, which blocks) at each connection;
/// give an address literal where a slow resolver would hold up the master.
final class RedisConnection {
    enum Outcome: Equatable {
        case reply(RESPValue)
        case failed(String)
        /// Redis refused the credentials or the database, or its certificate
        /// failed verification, or the CA file cannot be used: a
        /// configuration error.
        case rejected(String)
    }

    let address: RedisAddress
    private let socket: LeaseSocket
    private var parser = RESPParser()
    /// Replies to AUTH and SELECT still to come before the request's.
    private var setupReplies = 0
    private(set) var deadline: Instant?
    private var timeout: Duration = .zero

    init(address: RedisAddress) {
        self.address = address
        socket = LeaseSocket(host: address.host, port: address.port, tlsAtConnect: address.tls)
    }

    private var peer: String { socket.peer }

    var fd: Int32 { socket.fd }

    /// What to poll for: nil when there is no connection.
    var pollEvents: Int16? { socket.pollEvents }

    /// Sends one command; the outcome comes from `handle` or `expire`, or at
    /// once if the connection cannot even be started.
    func send(_ arguments: [String], at now: Instant, timeout: Duration) -> Outcome? {
        deadline = now + timeout
        self.timeout = timeout
        do throws(LeaseSocket.Failure) {
            if socket.stage == .closed {
                try socket.open()
                parser = RESPParser()
                var setup: [[String]] = []
                if let password = address.password {
                    setup.append(["AUTH"] + (address.user.map { [$0] } ?? []) + [password])
                }
                if address.database != 0 { setup.append(["SELECT", String(address.database)]) }
                setupReplies = setup.count
                try socket.write(setup.flatMap(RESPParser.encode))
            }
            try socket.write(RESPParser.encode(arguments))
        } catch {
            return fail(error)
        }
        return nil
    }

    /// Progress after poll reported `revents` on `fd`.
    func handle(_ revents: Int16, at now: Instant) -> Outcome? {
        guard socket.stage != .closed else { return nil }
        do throws(LeaseSocket.Failure) {
            parser.feed(try socket.progress(revents))
        } catch {
            return fail(error)
        }
        do throws(RESPError) {
            while let value = try parser.next() {
                if setupReplies > 0 {
                    setupReplies -= 1
                    if case .error(let message) = value {
                        close()
                        return .rejected("redis at \(peer) refused the lease's credentials or database: \(message)")
                    }
                    continue
                }
                deadline = nil
                if case .error(let message) = value, message.hasPrefix("NOAUTH") || message.hasPrefix("WRONGPASS") {
                    close()
                    return .rejected("redis at \(peer) requires a password: \(message)")
                }
                return .reply(value)
            }
        } catch {
            return fail("bad reply from redis at \(peer): \(error)")
        }
        return nil
    }

    /// Drops the connection if the request in flight is overdue.
    func expire(at now: Instant) -> Outcome? {
        guard let deadline, now >= deadline else { return nil }
        return fail("\(socket.overdue) redis at \(peer) within \(timeout.shortDescription)")
    }

    func close() {
        socket.close()
        deadline = nil
    }

    private func fail(_ failure: LeaseSocket.Failure) -> Outcome {
        close()
        return switch failure {
        case .connect(let why): .failed("cannot connect to redis at \(peer): \(why)")
        case .closed: .failed("redis at \(peer) closed the connection")
        case .io(let why): .failed("redis at \(peer): \(why)")
        case .handshake(let why): .failed("TLS with redis at \(peer): \(why)")
        case .untrusted(let why): .rejected("TLS with redis at \(peer): \(why)")
        }
    }

    private func fail(_ reason: String) -> Outcome {
        close()
        return .failed(reason)
    }
}
