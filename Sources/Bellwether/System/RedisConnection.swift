#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// One non-blocking TCP connection to Redis, driven by the master's poll loop:
/// one request at a time, each with a deadline. A fresh connection sends AUTH
/// and SELECT ahead of the request, pipelined. On any failure or timeout the
/// connection is dropped; the next request opens a new one.
///
/// A host name is resolved (getaddrinfo, which blocks) at each connection;
/// give an address literal where a slow resolver would hold up the master.
final class RedisConnection {
    enum Outcome: Equatable {
        case reply(RESPValue)
        case failed(String)
        /// Redis refused the credentials or the database: a configuration error.
        case rejected(String)
    }

    let address: RedisAddress
    private(set) var fd: Int32 = -1
    private var connected = false
    private var output: [UInt8] = []
    private var parser = RESPParser()
    /// Replies to AUTH and SELECT still to come before the request's.
    private var setupReplies = 0
    private(set) var deadline: Instant?
    private var timeout: Duration = .zero

    init(address: RedisAddress) { self.address = address }

    deinit { close() }

    private var peer: String {
        address.host.contains(":") ? "[\(address.host)]:\(address.port)" : "\(address.host):\(address.port)"
    }

    /// What to poll for: nil when there is no connection.
    var pollEvents: Int16? {
        guard fd >= 0 else { return nil }
        return !connected || !output.isEmpty ? Int16(POLLOUT) : Int16(POLLIN)
    }

    /// Sends one command; the outcome comes from `handle` or `expire`, or at
    /// once if the connection cannot even be started.
    func send(_ arguments: [String], at now: Instant, timeout: Duration) -> Outcome? {
        if fd < 0 {
            let result = Sys.calls.connectTCP(host: address.host, port: Int32(address.port))
            guard result >= 0 else { return .failed("cannot connect to redis at \(peer): \(describe(-result))") }
            fd = result
            connected = false
            parser = RESPParser()
            var setup: [[String]] = []
            if let password = address.password {
                setup.append(["AUTH"] + (address.user.map { [$0] } ?? []) + [password])
            }
            if address.database != 0 { setup.append(["SELECT", String(address.database)]) }
            setupReplies = setup.count
            output = setup.flatMap(RESPParser.encode)
        }
        output += RESPParser.encode(arguments)
        deadline = now + timeout
        self.timeout = timeout
        return connected ? flush() : nil
    }

    /// Progress after poll reported `revents` on `fd`.
    func handle(_ revents: Int16, at now: Instant) -> Outcome? {
        guard fd >= 0 else { return nil }
        if !connected {
            guard revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 else { return nil }
            let error = Sys.calls.socketError(fd)
            guard error == 0 else { return fail("cannot connect to redis at \(peer): \(describe(error))") }
            connected = true
        }
        if revents & Int16(POLLOUT) != 0, let outcome = flush() { return outcome }
        guard revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Sys.calls.read(fd, into: $0) }
            if count > 0 {
                parser.feed(buffer[0..<count])
                if count < buffer.count { break }
            } else if count == 0 {
                return fail("redis at \(peer) closed the connection")
            } else if count == -Int(EINTR) {
                continue
            } else if count == -Int(EAGAIN) || count == -Int(EWOULDBLOCK) {
                break
            } else {
                return fail("reading from redis at \(peer): \(describe(Int32(-count)))")
            }
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
        let waited = connected ? "no reply from" : "no connection to"
        return fail("\(waited) redis at \(peer) within \(timeout.shortDescription)")
    }

    func close() {
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
        connected = false
        output = []
        deadline = nil
    }

    private func fail(_ reason: String) -> Outcome {
        close()
        return .failed(reason)
    }

    private func flush() -> Outcome? {
        while !output.isEmpty {
            let written = output.withUnsafeBytes { Sys.sendWithoutSignal(fd, $0) }
            if written > 0 {
                output.removeFirst(written)
            } else if written < 0 && errno == EINTR {
                continue
            } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return nil
            } else {
                return fail("writing to redis at \(peer): \(describe(errno))")
            }
        }
        return nil
    }
}
