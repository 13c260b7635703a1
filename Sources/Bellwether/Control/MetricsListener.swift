#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--metrics-bind`: a plain HTTP/1.x listener in the master's poll loop,
/// one more poll entry and no timer, so it costs nothing while nobody
/// scrapes. Each connection sends one request and gets one answer, then is
/// closed: 200 with `MetricsReport` for `GET /metrics`, 404 for another
/// path, 405 for another method, 400 for what is no HTTP request.
final class MetricsListener {
    static let maximumConnections = 8
    static let requestLimit = 8192
    static let connectionTimeout = Duration.seconds(5)

    let address: BindAddress
    /// The address as bound: the real port of a `:0`.
    let shown: String
    private let server: RequestServer

    init(address: BindAddress, backlog: Int) throws(BellwetherError) {
        // --metrics-bind refuses fd://N when it is parsed.
        let (fd, shown) = Listeners.bind(address, backlog: backlog, mode: nil)
        guard fd >= 0 else { throw .cannotBind(address: address.description, errno: -fd) }
        self.address = address
        self.shown = shown
        let busy = Self.response(503, "Service Unavailable", "too many metrics connections\n")
        let tooLong = Self.response(431, "Request Header Fields Too Large", "request too long\n")
        server = RequestServer(fd: fd, limits: .init(connections: Self.maximumConnections, request: Self.requestLimit,
                                                     timeout: Self.connectionTimeout, busy: busy, tooLong: tooLong)) {
            Self.headerEnd(in: $0)
        }
    }

    var pollEntries: [(fd: Int32, events: Int16)] { server.pollEntries }
    var nextDeadline: Instant? { server.nextDeadline }
    var onAcceptFailure: ((Int32) -> Void)? {
        get { server.onAcceptFailure }
        set { server.onAcceptFailure = newValue }
    }

    /// `render` builds the metrics text, at most once per request that asks for it.
    func serve(_ revents: [Int16], at now: Instant, render: () -> String) {
        server.serve(revents, at: now) { Self.answer($0, render: render) }
    }

    func close() {
        server.close()
        if case .unix(let path) = address { Sys.calls.unlink(path) }
    }

    /// Where the request's headers end (the blank line), or nil until they have.
    static func headerEnd(in bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        for index in 1..<bytes.count where bytes[index] == 10 {
            // "\n\n" or "\r\n\r\n": a line feed after an empty line.
            if bytes[index - 1] == 10 || (index >= 3 && bytes[index - 1] == 13 && bytes[index - 2] == 10) {
                return index
            }
        }
        return nil
    }

    /// The answer to a request, given its request line and headers.
    static func answer(_ request: [UInt8], render: () -> String) -> [UInt8] {
        let line = String(decoding: request.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self)
        let words = line.split(separator: " ", omittingEmptySubsequences: false)
        guard words.count == 3, words[2].hasPrefix("HTTP/1."), words[1].hasPrefix("/") else {
            return response(400, "Bad Request", "expected an HTTP/1.x request line\n")
        }
        let path = words[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard path == "/metrics" else { return response(404, "Not Found", "only /metrics is served here\n") }
        guard words[0] == "GET" || words[0] == "HEAD" else {
            return response(405, "Method Not Allowed", "only GET is allowed\n", extra: "Allow: GET, HEAD\r\n")
        }
        let whole = response(200, "OK", render(), type: MetricsReport.contentType)
        guard words[0] == "HEAD" else { return whole }
        let headers = headerEnd(in: whole).map { whole[...$0] } ?? whole[...]
        return Array(headers)
    }

    static func response(_ code: Int, _ reason: String, _ body: String, type: String = "text/plain; charset=utf-8",
                         extra: String = "") -> [UInt8] {
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(code) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\n"
            + extra + "Connection: close\r\n\r\n"
        return Array(head.utf8) + bytes
    }
}

extension MetricsListener {
    /// The master's CPU time and resident size, read from /proc at scrape
    /// time; nil where /proc cannot tell.
    static func ownUsage() -> MetricsReport.Usage? {
        guard let stat = try? Sys.readFile("/proc/self/stat"), let statm = try? Sys.readFile("/proc/self/statm")
        else { return nil }
        return MetricsReport.usage(stat: String(decoding: stat, as: UTF8.self),
                                   statm: String(decoding: statm, as: UTF8.self),
                                   ticksPerSecond: Sys.calls.clockTicksPerSecond(), pageSize: Sys.calls.pageSize())
    }
}
