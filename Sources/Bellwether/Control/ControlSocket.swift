#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// What a client of the control socket asks: one line, one answer, closed.
enum ControlRequest: Equatable {
    case status(json: Bool)
    case reload
    case stop
    case scale(Int)

    init?(line: String) {
        let words = line.split(separator: " ")
        switch (words.first, words.count) {
        case ("status", 1): self = .status(json: false)
        case ("status", 2) where words[1] == "json": self = .status(json: true)
        case ("reload", 1): self = .reload
        case ("stop", 1): self = .stop
        case ("scale", 2):
            guard let count = Int(words[1]), (1...Plan.maximumWorkers).contains(count) else { return nil }
            self = .scale(count)
        default: return nil
        }
    }

    var line: String {
        switch self {
        case .status(let json): json ? "status json" : "status"
        case .reload: "reload"
        case .stop: "stop"
        case .scale(let count): "scale \(count)"
        }
    }
}

/// The master's control socket: a Unix stream socket, mode 0600 in a
/// directory of this user's alone, served from the master's poll loop. Each
/// connection sends one request line and gets one answer; a peer of another
/// user is refused even if the file's mode was loosened. Connections are
/// non-blocking, few and short-lived, so a stuck client cannot stall the master.
final class ControlSocket {
    private struct Connection {
        let fd: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        let deadline: Instant
    }

    static let maximumConnections = 16
    static let requestLimit = 256
    static let connectionTimeout = Duration.seconds(2)

    let path: String
    let fd: Int32
    private var connections: [Connection] = []

    /// Binds PATH, creating its directory (0700) when `privateDirectory`; a
    /// live socket at PATH means another master uses it.
    init(path: String, privateDirectory: Bool) throws(BellwetherError) {
        self.path = path
        if privateDirectory, let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try Sys.preparePrivateDirectory(String(path[..<slash]))
        }
        // Created 0600 by the umask: no moment with a wider mode, no chmod
        // that could follow a symlink.
        let previous = Sys.calls.umask(0o177)
        let result = Sys.calls.listenUnix(path, mode: -1, backlog: 64)
        _ = Sys.calls.umask(previous)
        guard result >= 0 else {
            throw -result == EADDRINUSE ? .controlSocketBusy(path: path)
                : .cannotCreate(what: "control socket", path: path, errno: -result)
        }
        fd = result
        Sys.calls.setNonBlocking(fd)
    }

    /// The descriptors to poll: the listener, then every open connection.
    /// The descriptors to poll: the listener (events 0 while accepting is
    /// paused), then every open connection.
    var pollEntries: [(fd: Int32, events: Int16)] {
        [(fd, Int16(acceptPausedUntil == nil ? POLLIN : 0))]
            + connections.map { ($0.fd, Int16($0.output.isEmpty ? POLLIN : POLLOUT)) }
    }

    var nextDeadline: Instant? { (connections.map(\.deadline) + [acceptPausedUntil].compactMap { $0 }).min() }

    /// Out of descriptors (EMFILE, ENFILE) or memory: the pending connection
    /// stays queued and the listener readable, so accepting pauses a while
    /// rather than spinning.
    private var acceptPausedUntil: Instant?
    static let acceptPause = Duration.milliseconds(250)
    var onAcceptFailure: ((Int32) -> Void)?
    private var acceptFailing = false

    /// Accepts, reads and writes what is ready; returns the requests that are
    /// complete. `answer` is called for each and gives the bytes to send back.
    func serve(_ revents: [Int16], at now: Instant, answer: (ControlRequest) -> String) {
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

    private func acceptAll(at now: Instant, answer: (ControlRequest) -> String) {
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
            guard connections.count < Self.maximumConnections else {
                let busy = Array("error: busy: too many control connections\n".utf8)
                _ = busy.withUnsafeBytes { Sys.sendWithoutSignal(connection, $0) }
                Sys.closeFile(connection)
                continue
            }
            let peer = Sys.calls.peerUID(connection)
            let owner = Int64(Sys.calls.effectiveUserID())
            connections.append(Connection(fd: connection, deadline: now + Self.connectionTimeout))
            if peer != owner && peer != 0 {
                connections[connections.count - 1].output = Array("error: permission denied: the control socket "
                    .utf8) + Array("answers uid \(owner) only\n".utf8)
            }
            progress(connections.count - 1, answer: answer)
        }
    }

    /// Reads the request until its newline, then writes the answer; marks the
    /// connection done (fd -1) when the answer is out or the peer misbehaves.
    private func progress(_ index: Int, answer: (ControlRequest) -> String) {
        var connection = connections[index]
        if connection.output.isEmpty && !receive(into: &connection, answer: answer) || flush(&connection) {
            Sys.closeFile(connection.fd)
            connection = Connection(fd: -1, deadline: connection.deadline)
        }
        connections[index] = connection
    }

    /// Reads what is there; false when the peer closed or failed.
    private func receive(into connection: inout Connection, answer: (ControlRequest) -> String) -> Bool {
        var buffer = [UInt8](repeating: 0, count: Self.requestLimit)
        let count = buffer.withUnsafeMutableBytes { Sys.calls.read(connection.fd, into: $0) }
        if count == 0 || (count < 0 && count != -Int(EAGAIN) && count != -Int(EINTR)) { return false }
        if count > 0 { connection.input += buffer[0..<count] }
        guard let newline = connection.input.firstIndex(of: UInt8(ascii: "\n")) else {
            if connection.input.count >= Self.requestLimit { connection.output = Array("error: request too long\n".utf8) }
            return true
        }
        var line = String(decoding: connection.input[..<newline], as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        let reply = ControlRequest(line: line).map(answer)
            ?? "error: unknown request \(quoted(line)); expected status, reload, stop or scale N\n"
        connection.output = Array(reply.utf8)
        return true
    }

    /// Sends what it can; true when the answer is out or the peer is gone.
    private func flush(_ connection: inout Connection) -> Bool {
        guard !connection.output.isEmpty else { return false }
        let written = connection.output.withUnsafeBytes { Sys.sendWithoutSignal(connection.fd, $0) }
        if written > 0 { connection.output.removeFirst(written) }
        return connection.output.isEmpty || (written < 0 && written != -Int(EAGAIN) && written != -Int(EINTR))
    }

    func close() {
        for connection in connections where connection.fd >= 0 { Sys.closeFile(connection.fd) }
        connections = []
        Sys.closeFile(fd)
        Sys.calls.unlink(path)
    }
}
