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
/// non-blocking, few and short-lived (`RequestServer`), so a stuck client
/// cannot stall the master.
final class ControlSocket {
    static let maximumConnections = 16
    static let requestLimit = 256
    static let connectionTimeout = Duration.seconds(2)
    static let acceptPause = RequestServer.acceptPause

    let path: String
    private let server: RequestServer

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
        let limits = RequestServer.Limits(connections: Self.maximumConnections, request: Self.requestLimit,
                                          timeout: Self.connectionTimeout,
                                          busy: Array("error: busy: too many control connections\n".utf8),
                                          tooLong: Array("error: request too long\n".utf8))
        server = RequestServer(fd: result, limits: limits) { $0.firstIndex(of: UInt8(ascii: "\n")) }
        server.admit = { connection in
            let peer = Sys.calls.peerUID(connection)
            let owner = Int64(Sys.calls.effectiveUserID())
            guard peer != owner && peer != 0 else { return nil }
            return Array("error: permission denied: the control socket answers uid \(owner) only\n".utf8)
        }
    }

    var fd: Int32 { server.fd }
    var pollEntries: [(fd: Int32, events: Int16)] { server.pollEntries }
    var nextDeadline: Instant? { server.nextDeadline }
    var onAcceptFailure: ((Int32) -> Void)? {
        get { server.onAcceptFailure }
        set { server.onAcceptFailure = newValue }
    }

    /// Accepts, reads and writes what is ready; `answer` is called for each
    /// complete request and gives the text to send back.
    func serve(_ revents: [Int16], at now: Instant, answer: (ControlRequest) -> String) {
        server.serve(revents, at: now) { bytes in
            var line = String(decoding: bytes, as: UTF8.self)
            if line.hasSuffix("\r") { line.removeLast() }
            return Array((ControlRequest(line: line).map(answer)
                ?? "error: unknown request \(quoted(line)); expected status, reload, stop or scale N\n").utf8)
        }
    }

    func close() {
        server.close()
        Sys.calls.unlink(path)
    }
}
