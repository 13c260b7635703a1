/// Where the scheduler is elected: `--lease file:PATH` (an flock shared by
/// supervisors on one host), `--lease redis://…` (`rediss://` over TLS) or
/// `--lease postgres://…` (one holder in a cluster).
public enum LeaseAddress: Hashable, Sendable {
    case file(path: String)
    case redis(RedisAddress)
    case postgres(PostgresAddress)

    static let expected = "file:PATH, redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB][?key=NAME]"
        + " (rediss:// also &cacert=PATH or &insecure=1) or postgres://[USER[:PASSWORD]@]HOST[:PORT][/DBNAME][?key=NAME]"

    static func parse(_ text: String, source: SettingSource) throws(BellwetherError) -> LeaseAddress {
        if text.hasPrefix("file:") {
            guard text.count > 5 else { throw .invalidValue(source, value: text, expected: expected) }
            return .file(path: String(text.dropFirst(5)))
        }
        if text.hasPrefix("redis://") || text.hasPrefix("rediss://") {
            return .redis(try RedisAddress.parse(text, source: source))
        }
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            return .postgres(try PostgresAddress.parse(text, source: source))
        }
        throw .invalidValue(source, value: text, expected: expected)
    }
}

/// Where a network lease is kept, and how a command reaches it: Redis (Lua
/// scripts on one connection) or PostgreSQL (one statement per command).
public enum LeaseStoreAddress: Hashable, Sendable, CustomStringConvertible {
    case redis(RedisAddress)
    case postgres(PostgresAddress)

    public var description: String {
        switch self {
        case .redis(let address): address.description
        case .postgres(let address): address.description
        }
    }

    /// Whether the lease cannot work without TLS (and so without libssl).
    public var needsTLS: Bool {
        switch self {
        case .redis(let address): address.tls != nil
        case .postgres(let address): address.sslMode.requiresTLS
        }
    }

    /// The store's name, for logs and metrics: "redis" or "postgres".
    public var kind: String {
        switch self {
        case .redis: "redis"
        case .postgres: "postgres"
        }
    }
}

/// A parsed `redis://` or `rediss://` lease URL. The password may also come
/// from BELLWETHER_LEASE_PASSWORD, so that it need not appear in `ps`.
///
/// `rediss://` verifies the server's certificate against the system's CA
/// store, or only against `cacert=PATH`, and the host name in the URL against
/// the certificate; `insecure=1` verifies nothing (encryption without
/// authentication of the server).
public struct RedisAddress: Hashable, Sendable, CustomStringConvertible {
    public var user: String?
    public var password: String?
    public var host: String
    public var port: Int
    public var database: Int
    public var key: String
    /// nil: plain TCP (`redis://`).
    public var tls: TLSSettings?

    public static let defaultKey = "bellwether:scheduler"

    public init(user: String? = nil, password: String? = nil, host: String, port: Int, database: Int, key: String,
                tls: TLSSettings? = nil) {
        (self.user, self.password, self.host, self.port) = (user, password, host, port)
        (self.database, self.key, self.tls) = (database, key, tls)
    }

    /// The URL without its password, for logs.
    public var description: String {
        let who = user.map { "\($0)@" } ?? (password == nil ? "" : "***@")
        let shownHost = host.contains(":") ? "[\(host)]" : host
        var text = "\(tls == nil ? "redis" : "rediss")://\(who)\(shownHost):\(port)/\(database)?key=\(key)"
        if let caFile = tls?.caFile { text += "&cacert=\(caFile)" }
        if tls?.verification == TLSSettings.Verification.none { text += "&insecure=1" }
        return text
    }

    static func parse(_ text: String, source: SettingSource) throws(BellwetherError) -> RedisAddress {
        func bad(_ why: String) -> BellwetherError {
            .invalidValue(source, value: redacted(text), expected: LeaseAddress.expected + " (" + why + ")")
        }
        let secure = text.hasPrefix("rediss://")
        var rest = Substring(text.dropFirst(secure ? "rediss://".count : "redis://".count))
        var key = defaultKey
        var tls = secure ? TLSSettings(verification: .full) : nil
        if let question = rest.firstIndex(of: "?") {
            try parseParameters(rest[rest.index(after: question)...], key: &key, tls: &tls, bad: bad)
            rest = rest[..<question]
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let text = rest[rest.index(after: slash)...]
            if !text.isEmpty {
                guard let number = Int(text), (0...1_000_000).contains(number) else { throw bad("DB is a number") }
                database = number
            }
            rest = rest[..<slash]
        }
        var user: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = percentDecoded(credentials[..<colon])
                password = percentDecoded(credentials[credentials.index(after: colon)...])
                guard user != nil, password != nil else { throw bad("bad %-escape") }
                if user == "" { user = nil }
            } else {
                guard let decoded = percentDecoded(credentials) else { throw bad("bad %-escape") }
                password = decoded  // redis://PASSWORD@HOST, as redis-cli reads it
            }
        }
        let (host, port) = try hostAndPort(rest, defaultPort: 6379, bad)
        return RedisAddress(user: user, password: password, host: host, port: port, database: database, key: key,
                            tls: tls)
    }

    /// `key=NAME`, and with `rediss://` (`tls` set) `cacert=PATH` and
    /// `insecure=1`, each %-decoded; a later one replaces an earlier one.
    private static func parseParameters(_ query: Substring, key: inout String, tls: inout TLSSettings?,
                                        bad: (String) -> BellwetherError) throws(BellwetherError) {
        var insecure = false
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = percentDecoded(parts[1]), !value.isEmpty else {
                throw bad("a parameter is NAME=VALUE")
            }
            switch parts[0] {
            case "key":
                key = value
            case "cacert", "insecure":
                guard tls != nil else { throw bad("cacert and insecure are for rediss://") }
                if parts[0] == "insecure" {
                    guard let on = ["1": true, "0": false][value] else { throw bad("insecure is 1 or 0") }
                    insecure = on
                } else {
                    guard value.hasPrefix("/"), !value.utf8.contains(0) else { throw bad("cacert is an absolute path") }
                    tls?.caFile = value
                }
            default:
                throw bad("the parameters are key=NAME, and with rediss:// cacert=PATH and insecure=1")
            }
        }
        guard !insecure || tls?.caFile == nil else {
            throw bad("insecure=1 checks no certificate, so cacert has nothing to do")
        }
        if insecure { tls?.verification = .none }
    }

    /// `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT`.
    static func hostAndPort(_ rest: Substring, defaultPort: Int,
                            _ bad: (String) -> BellwetherError) throws(BellwetherError) -> (String, Int) {
        var host = String(rest)
        var port = defaultPort
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw bad("unclosed [") }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()), (1...65535).contains(number) else {
                    throw bad("PORT is 1-65535")
                }
                port = number
            }
            host = String(host[host.index(after: host.startIndex)..<close])
            guard BindAddress.isIPv6(host) else { throw bad("bad IPv6 address") }
        } else if let colon = host.lastIndex(of: ":") {
            guard let number = Int(host[host.index(after: colon)...]), (1...65535).contains(number) else {
                throw bad("PORT is 1-65535")
            }
            port = number
            host = String(host[..<colon])
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":") })
        else { throw bad("HOST is a name or an address") }
        return (host, port)
    }

    /// The URL with any password replaced, for error messages.
    static func redacted(_ text: String) -> String {
        let prefix = text.hasPrefix("rediss://") ? "rediss://" : "redis://"
        guard text.hasPrefix(prefix), let at = text.lastIndex(of: "@") else { return text }
        let start = text.index(text.startIndex, offsetBy: prefix.count)
        guard start <= at else { return text }
        let credentials = text[start..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return prefix + "***" + text[at...] }
        return String(text[..<colon]) + ":***" + text[at...]
    }

    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var index = text.utf8.startIndex
        let utf8 = text.utf8
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%") {
                let first = utf8.index(after: index)
                guard first != utf8.endIndex else { return nil }
                let second = utf8.index(after: first)
                guard second != utf8.endIndex,
                      let value = UInt8(String(decoding: [utf8[first], utf8[second]], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
                index = utf8.index(after: second)
            } else {
                bytes.append(byte)
                index = utf8.index(after: index)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
