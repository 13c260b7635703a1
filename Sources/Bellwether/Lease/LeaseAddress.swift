/// Where the scheduler is elected: `--lease file:PATH` (an flock shared by
/// supervisors on one host), `--lease redis://…` or `--lease postgres://…`
/// (one holder in a cluster).
public enum LeaseAddress: Hashable, Sendable {
    case file(path: String)
    case redis(RedisAddress)
    case postgres(PostgresAddress)

    static let expected = "file:PATH, redis://[USER:PASSWORD@]HOST[:PORT][/DB][?key=NAME] or "
        + "postgres://[USER[:PASSWORD]@]HOST[:PORT][/DBNAME][?key=NAME]"

    static func parse(_ text: String, source: SettingSource) throws(BellwetherError) -> LeaseAddress {
        if text.hasPrefix("file:") {
            guard text.count > 5 else { throw .invalidValue(source, value: text, expected: expected) }
            return .file(path: String(text.dropFirst(5)))
        }
        if text.hasPrefix("redis://") { return .redis(try RedisAddress.parse(text, source: source)) }
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

    /// The store's name, for logs and metrics: "redis" or "postgres".
    public var kind: String {
        switch self {
        case .redis: "redis"
        case .postgres: "postgres"
        }
    }
}

/// A parsed `redis://` lease URL. The password may also come from
/// BELLWETHER_LEASE_PASSWORD, so that it need not appear in `ps`.
public struct RedisAddress: Hashable, Sendable, CustomStringConvertible {
    public var user: String?
    public var password: String?
    public var host: String
    public var port: Int
    public var database: Int
    public var key: String

    public static let defaultKey = "bellwether:scheduler"

    /// The URL without its password, for logs.
    public var description: String {
        let who = user.map { "\($0)@" } ?? (password == nil ? "" : "***@")
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "redis://\(who)\(shownHost):\(port)/\(database)?key=\(key)"
    }

    static func parse(_ text: String, source: SettingSource) throws(BellwetherError) -> RedisAddress {
        func bad(_ why: String) -> BellwetherError {
            .invalidValue(source, value: redacted(text), expected: LeaseAddress.expected + " (" + why + ")")
        }
        var rest = Substring(text.dropFirst("redis://".count))
        var key = defaultKey
        if let question = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: question)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0] == "key", let value = percentDecoded(parts[1]), !value.isEmpty else {
                    throw bad("the only parameter is key=NAME")
                }
                key = value
            }
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
        return RedisAddress(user: user, password: password, host: host, port: port, database: database, key: key)
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
        let prefix = "redis://"
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
