#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listening stream socket served from the master's poll loop, one short
/// exchange per connection: read a request, send one answer, close. The
/// control socket and the metrics endpoint are both one. Connections are
/// non-blocking, at most `maximumConnections`, and each is closed at its
/// deadline whatever it did, so that a stuck client cannot stall the master.
final class RequestServer {
    private struct Connection {
        let fd: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        let deadline: Instant
    }

    struct Limits {
        var connections: Int
        /// The most a request may take, in bytes.
        var request: Int
        var timeout: Duration
        /// Sent to a connection beyond `connections`, before it is closed.
        var busy: [UInt8]
        /// Sent to a request that reaches `request` bytes unfinished.
        var tooLong: [UInt8]
    }

    let fd: Int32
    let limits: Limits
    /// Where a request ends, in what a connection has sent so far: nil while it has not.
    private let end: ([UInt8]) -> Int?
    /// An answer given without reading a request (a refused peer), or nil.
    var admit: (Int32) -> [UInt8]? = { _ in nil }
    var onAcceptFailure: ((Int32) -> Void)?
    private var connections: [Connection] = []

    /// Out of descriptors (EMFILE, ENFILE) or memory: the pending connection
    /// stays queued and the listener readable, so accepting pauses a while
    /// rather than spinning.
    private var acceptPausedUntil: Instant?
    static let acceptPause = Duration.milliseconds(250)
    private var acceptFailing = false

    /// Serves the listening descriptor `fd`, made non-blocking here.
    init(fd: Int32, limits: Limits, end: @escaping ([UInt8]) -> Int?) {
        self.fd = fd
        self.limits = limits
        self.end = end
        Sys.calls.setNonBlocking(fd)
    }

    /// The descriptors to poll: the listener (events 0 while accepting is
    /// paused), then every open connection.
    var pollEntries: [(fd: Int32, events: Int16)] {
        [(fd, Int16(acceptPausedUntil == nil ? POLLIN : 0))]
            + connections.map { ($0.fd, Int16($0.output.isEmpty ? POLLIN : POLLOUT)) }
    }

    var nextDeadline: Instant? { (connections.map(\.deadline) + [acceptPausedUntil].compactMap { $0 }).min() }

    /// Accepts, reads and writes what is ready, given the `revents` of
    /// `pollEntries`. `answer` gets each complete request (its terminator
    /// left out) and gives the bytes to send back.
    func serve(_ revents: [Int16], at now: Instant, answer: ([UInt8]) -> [UInt8]) {
        for index in connections.indices.reversed() {
            let slot = index + 1
            let ready = slot < revents.count ? revents[slot] : 0
            if ready != 0 { progress(index, answer: answer) }
        }
        connections.removeAll { connection in
            let done = connection.fd < 0
            if !done && connection.deadline <= now { Sys.closeFile(connection.fd) }
            return done || connection.deadline <= now
        }
        if let until = acceptPausedUntil, now >= until { acceptPausedUntil = nil }
        if let first = revents.first, first != 0, acceptPausedUntil == nil { acceptAll(at: now, answer: answer) }
    }

    private func acceptAll(at now: Instant, answer: ([UInt8]) -> [UInt8]) {
        while true {
            let connection = Sys.calls.accept(fd)
            guard connection >= 0 else {
                if -connection != EAGAIN && -connection != EINTR && -connection != ECONNABORTED {
                    acceptPausedUntil = now + Self.acceptPause
                    if !acceptFailing { onAcceptFailure?(-connection) }  // once per streak
                    acceptFailing = true
                }
                return
            }
            acceptFailing = false
            // Answered in this loop already: a client quick to come back must
            // not find its own finished connections counted against it.
            connections.removeAll { $0.fd < 0 }
            guard connections.count < limits.connections else {
                _ = limits.busy.withUnsafeBytes { Sys.sendWithoutSignal(connection, $0) }
                Sys.closeFile(connection)
                continue
            }
            connections.append(Connection(fd: connection, output: admit(connection) ?? [],
                                          deadline: now + limits.timeout))
            progress(connections.count - 1, answer: answer)
        }
    }

    /// Reads the request to its end, then writes the answer; marks the
    /// connection done (fd -1) when the answer is out or the peer misbehaves.
    private func progress(_ index: Int, answer: ([UInt8]) -> [UInt8]) {
        var connection = connections[index]
        if connection.output.isEmpty && !receive(into: &connection, answer: answer) || flush(&connection) {
            Sys.closeFile(connection.fd)
            connection = Connection(fd: -1, deadline: connection.deadline)
        }
        connections[index] = connection
    }

    /// Reads what is there; false when the peer closed or failed.
    private func receive(into connection: inout Connection, answer: ([UInt8]) -> [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: limits.request - connection.input.count)
        let count = buffer.withUnsafeMutableBytes { Sys.calls.read(connection.fd, into: $0) }
        if count == 0 || (count < 0 && count != -Int(EAGAIN) && count != -Int(EINTR)) { return false }
        if count > 0 { connection.input += buffer[0..<count] }
        if let end = end(connection.input) {
            connection.output = answer(Array(connection.input[..<end]))
        } else if connection.input.count >= limits.request {
            connection.output = limits.tooLong
        }
        return true
    }

    /// Sends what it can; true when the answer is out or the peer is gone.
    private func flush(_ connection: inout Connection) -> Bool {
        guard !connection.output.isEmpty else { return false }
        let written = connection.output.withUnsafeBytes { Sys.sendWithoutSignal(connection.fd, $0) }
        if written > 0 { connection.output.removeFirst(written) }
        return connection.output.isEmpty || (written < 0 && written != -Int(EAGAIN) && written != -Int(EINTR))
    }

    /// Closes every connection and the listener.
    func close() {
        for connection in connections where connection.fd >= 0 { Sys.closeFile(connection.fd) }
        connections = []
        Sys.closeFile(fd)
    }
}
