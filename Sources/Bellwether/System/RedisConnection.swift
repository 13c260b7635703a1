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

    /// How far a connection has come; requests wait in `output` until `open`.
    private enum Stage { case connecting, handshaking, open }

    let address: RedisAddress
    private(set) var fd: Int32 = -1
    private var stage = Stage.connecting
    private var tls: TLSSession?
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
        switch stage {
        case .connecting: return Int16(POLLOUT)
        case .handshaking: return tls?.waitsFor ?? Int16(POLLOUT)
        case .open:
            // A TLS read may wait for POLLOUT, a TLS write for POLLIN.
            return (output.isEmpty ? Int16(POLLIN) : Int16(POLLOUT)) | (tls?.waitsFor ?? 0)
        }
    }

    /// Sends one command; the outcome comes from `handle` or `expire`, or at
    /// once if the connection cannot even be started.
    func send(_ arguments: [String], at now: Instant, timeout: Duration) -> Outcome? {
        if fd < 0 {
            let result = Sys.calls.connectTCP(host: address.host, port: Int32(address.port))
            guard result >= 0 else { return .failed("cannot connect to redis at \(peer): \(describe(-result))") }
            fd = result
            stage = .connecting
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
        return stage == .open ? flush() : nil
    }

    /// Progress after poll reported `revents` on `fd`.
    func handle(_ revents: Int16, at now: Instant) -> Outcome? {
        guard fd >= 0 else { return nil }
        if stage == .connecting {
            guard revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 else { return nil }
            let error = Sys.calls.socketError(fd)
            guard error == 0 else { return fail("cannot connect to redis at \(peer): \(describe(error))") }
            guard let settings = address.tls else {
                stage = .open
                return flush()
            }
            do throws(TLSError) {
                tls = try TLSSession(fd: fd, host: address.host, settings: settings)
            } catch {
                close()
                return .rejected("TLS with redis at \(peer): \(error.message)")
            }
            stage = .handshaking
        }
        if stage == .handshaking {
            guard revents != 0, let tls else { return nil }
            switch tls.handshake() {
            case .established:
                stage = .open
                return flush()
            case .waiting:
                return nil
            case .untrusted(let reason):
                close()
                return .rejected("TLS with redis at \(peer): \(reason)")
            case .failed(let reason):
                return fail("TLS with redis at \(peer): \(reason)")
            }
        }
        // Through TLS, readiness of the socket is not readiness of the
        // session: try both ways whenever poll wakes us.
        if revents & Int16(POLLOUT) != 0 || tls != nil, let outcome = flush() { return outcome }
        guard revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 || tls != nil else { return nil }
        if let outcome = receive() { return outcome }
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
        let waited = switch stage {
        case .connecting: "no connection to"
        case .handshaking: "no TLS handshake with"
        case .open: "no reply from"
        }
        return fail("\(waited) redis at \(peer) within \(timeout.shortDescription)")
    }

    func close() {
        tls?.close()
        tls = nil
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
        stage = .connecting
        output = []
        deadline = nil
    }

    private func fail(_ reason: String) -> Outcome {
        close()
        return .failed(reason)
    }

    /// Reads what has come into the parser, until the stream would block; an
    /// outcome only if the connection failed.
    private func receive() -> Outcome? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            switch buffer.withUnsafeMutableBytes(read) {
            case .bytes(let count): parser.feed(buffer[0..<count])
            case .wouldBlock: return nil
            case .closed: return fail("redis at \(peer) closed the connection")
            case .failed(let reason): return fail("reading from redis at \(peer): \(reason)")
            }
        }
    }

    private func flush() -> Outcome? {
        while !output.isEmpty {
            switch output.withUnsafeBytes(write) {
            case .bytes(let count): output.removeFirst(count)
            case .wouldBlock: return nil
            case .closed: return fail("redis at \(peer) closed the connection")
            case .failed(let reason): return fail("writing to redis at \(peer): \(reason)")
            }
        }
        return nil
    }

    private func read(_ buffer: UnsafeMutableRawBufferPointer) -> StreamTransfer {
        if let tls { return tls.read(into: buffer) }
        while true {
            let count = Sys.calls.read(fd, into: buffer)
            switch count {
            case 0: return .closed
            case 1...: return .bytes(count)
            case -Int(EINTR): continue
            case -Int(EAGAIN), -Int(EWOULDBLOCK): return .wouldBlock
            default: return .failed(describe(Int32(-count)))
            }
        }
    }

    private func write(_ bytes: UnsafeRawBufferPointer) -> StreamTransfer {
        if let tls { return tls.write(bytes) }
        while true {
            let count = Sys.sendWithoutSignal(fd, bytes)
            switch count {
            case 0...: return count > 0 ? .bytes(count) : .wouldBlock
            case -Int(EINTR): continue
            case -Int(EAGAIN), -Int(EWOULDBLOCK): return .wouldBlock
            default: return .failed(describe(Int32(-count)))
            }
        }
    }
}
