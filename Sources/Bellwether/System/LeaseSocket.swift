#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One non-blocking TCP connection to a lease's store, plain or TLS, driven
/// by the master's poll loop: it connects, shakes hands when TLS is asked
/// for (at once, for `rediss://`; after the SSLRequest's answer, for
/// PostgreSQL), writes what is queued as the stream takes it, and hands over
/// what arrives. It never blocks, but for the host name's resolution
/// (getaddrinfo) at each connection: give an address literal where a slow
/// resolver would hold up the master.
final class LeaseSocket {
    enum Failure: Error, Equatable {
        case connect(String)
        case closed
        case io(String)
        /// TLS could not be set up, or the server's certificate failed
        /// verification: a configuration problem, not a network one.
        case untrusted(String)
        /// The TLS handshake failed otherwise.
        case handshake(String)
    }

    /// How far the connection has come; what is written waits until `open`.
    enum Stage: Equatable { case closed, connecting, handshaking, open }

    let host: String
    let port: Int
    /// TLS as soon as the connection is made (`rediss://`), or nil.
    let tlsAtConnect: TLSSettings?
    private(set) var fd: Int32 = -1
    private(set) var stage = Stage.closed
    private var tls: TLSSession?
    private var output: [UInt8] = []

    init(host: String, port: Int, tlsAtConnect: TLSSettings? = nil) {
        self.host = host
        self.port = port
        self.tlsAtConnect = tlsAtConnect
    }

    deinit { close() }

    /// `HOST:PORT`, `[IPV6]:PORT`, for messages.
    var peer: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    var isTLS: Bool { tls != nil }

    /// What a request overdue at this stage waited for, for its log line:
    /// "no answer from redis at …".
    var overdue: String {
        switch stage {
        case .closed, .connecting: "no connection to"
        case .handshaking: "no TLS handshake with"
        case .open: "no answer from"
        }
    }

    /// What to poll for: nil when there is no connection.
    var pollEvents: Int16? {
        switch stage {
        case .closed: return nil
        case .connecting: return Int16(POLLOUT)
        case .handshaking: return tls?.waitsFor ?? Int16(POLLOUT)
        case .open:
            // A TLS read may wait for POLLOUT, a TLS write for POLLIN.
            return (output.isEmpty ? Int16(POLLIN) : Int16(POLLOUT)) | (tls?.waitsFor ?? 0)
        }
    }

    /// Starts a connection (it is made once `progress` says so).
    func open() throws(Failure) {
        close()
        let result = Sys.calls.connectTCP(host: host, port: Int32(port))
        guard result >= 0 else { throw .connect(describe(-result)) }
        fd = result
        stage = .connecting
    }

    /// Starts TLS on the open connection, with nothing queued (PostgreSQL,
    /// after the server agreed to it).
    func startTLS(_ settings: TLSSettings) throws(Failure) {
        do throws(TLSError) {
            tls = try TLSSession(fd: fd, host: host, settings: settings)
        } catch {
            throw .untrusted(error.message)
        }
        stage = .handshaking
    }

    /// Queues `bytes` and writes what the stream takes now.
    func write(_ bytes: [UInt8]) throws(Failure) {
        output += bytes
        if stage == .open { try flush() }
    }

    /// After poll reported `revents`: completes the connection and the
    /// handshake, writes what is queued, and returns what could be read
    /// (empty: nothing yet).
    func progress(_ revents: Int16) throws(Failure) -> [UInt8] {
        if stage == .connecting {
            guard revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 else { return [] }
            let error = Sys.calls.socketError(fd)
            guard error == 0 else { throw .connect(describe(error)) }
            stage = .open
            if let tlsAtConnect { try startTLS(tlsAtConnect) }
        }
        if stage == .handshaking {
            guard revents != 0, let tls else { return [] }
            switch tls.handshake() {
            case .established: stage = .open
            case .waiting: return []
            case .untrusted(let reason): throw .untrusted(reason)
            case .failed(let reason): throw .handshake(reason)
            }
        }
        guard stage == .open else { return [] }
        // Through TLS, readiness of the socket is not readiness of the
        // session: try both ways whenever poll wakes us.
        if revents & Int16(POLLOUT) != 0 || tls != nil { try flush() }
        guard revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 || tls != nil else { return [] }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        // A store that floods cannot hold the loop: the rest waits for the next turn.
        while received.count < Self.readPerTurn {
            switch buffer.withUnsafeMutableBytes(read) {
            case .bytes(let count): received += buffer[0..<count]
            case .wouldBlock: return received
            case .closed:
                if received.isEmpty { throw .closed }
                return received
            case .failed(let reason): throw .io("reading: \(reason)")
            }
        }
        return received
    }

    /// The most one `progress` reads; a lease's answers are a few hundred bytes.
    static let readPerTurn = 256 << 10

    func close() {
        tls?.close()
        tls = nil
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
        stage = .closed
        output = []
    }

    private func flush() throws(Failure) {
        while !output.isEmpty {
            switch output.withUnsafeBytes(send) {
            case .bytes(let count): output.removeFirst(count)
            case .wouldBlock: return
            case .closed: throw .closed
            case .failed(let reason): throw .io("writing: \(reason)")
            }
        }
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

    private func send(_ bytes: UnsafeRawBufferPointer) -> StreamTransfer {
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
