/// A parsed `postgres://` (or `postgresql://`) lease URL, after libpq's
/// connection URIs where they apply:
///
///     postgres://[USER[:PASSWORD]@]HOST[:PORT][/DBNAME][?PARAM=VALUE&…]
///
/// with `sslmode`, `sslrootcert`, `application_name` and `connect_timeout`
/// as libpq reads them, and two of the lease's own: `key` (the lease's row)
/// and `table` (the lease table's name). The password may instead come from
/// BELLWETHER_LEASE_PASSWORD or PGPASSWORD, so that it need not appear in
/// `ps`; it never appears in a log. As in libpq, USER defaults to the name
/// of the user the master runs as, and DBNAME to USER.
public struct PostgresAddress: Hashable, Sendable, CustomStringConvertible {
    public enum SSLMode: String, Hashable, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"

        /// No connection without TLS.
        public var requiresTLS: Bool { [.require, .verifyCA, .verifyFull].contains(self) }
    }

    public var user: String?
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String?
    public var sslMode: SSLMode = .prefer
    public var sslRootCert: String?
    public var applicationName = "bellwether"
    /// libpq's connect_timeout, in seconds; nil: the renew interval bounds it.
    public var connectTimeout: Int?
    public var key = RedisAddress.defaultKey
    public var table = PostgresAddress.defaultTable

    public static let defaultTable = "public.bellwether_lease"
    static let expected = "postgres://[USER[:PASSWORD]@]HOST[:PORT][/DBNAME][?key=NAME&table=NAME&sslmode=MODE]"

    /// The URL without its password, for logs.
    public var description: String {
        let who = user.map { "\($0)@" } ?? (password == nil ? "" : "***@")
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(who)\(shownHost):\(port)/\(database ?? user ?? "")?key=\(key)&table=\(table)"
    }

    static func parse(_ text: String, source: SettingSource) throws(BellwetherError) -> PostgresAddress {
        func bad(_ why: String) -> BellwetherError {
            .invalidValue(source, value: redacted(text), expected: expected + " (" + why + ")")
        }
        guard let scheme = ["postgres://", "postgresql://"].first(where: text.hasPrefix) else {
            throw bad("the scheme is postgres:// or postgresql://")
        }
        var rest = Substring(text.dropFirst(scheme.count))
        var address = PostgresAddress(host: "localhost", port: 5432)
        if let question = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: question)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let value = RedisAddress.percentDecoded(parts[1]) else {
                    throw bad("parameters are NAME=VALUE")
                }
                try address.set(String(parts[0]), value, bad)
            }
            rest = rest[..<question]
        }
        if let slash = rest.firstIndex(of: "/") {
            let name = rest[rest.index(after: slash)...]
            if !name.isEmpty {
                guard let decoded = RedisAddress.percentDecoded(name), !decoded.contains("\0") else {
                    throw bad("bad DBNAME")
                }
                address.database = decoded
            }
            rest = rest[..<slash]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let colon = credentials.firstIndex(of: ":")
            guard let user = RedisAddress.percentDecoded(credentials[..<(colon ?? credentials.endIndex)]) else {
                throw bad("bad %-escape")
            }
            address.user = user.isEmpty ? nil : user
            if let colon {
                guard let password = RedisAddress.percentDecoded(credentials[credentials.index(after: colon)...]) else {
                    throw bad("bad %-escape")
                }
                address.password = password
            }
        }
        if !rest.isEmpty {
            let (host, port) = try RedisAddress.hostAndPort(rest, defaultPort: 5432, bad)
            address.host = host
            address.port = port
        }
        for value in [address.user, address.password, address.database, address.sslRootCert].compactMap({ $0 })
            where value.contains("\0") {
            throw bad("no NUL bytes")
        }
        return address
    }

    private mutating func set(_ name: String, _ value: String,
                              _ bad: (String) -> BellwetherError) throws(BellwetherError) {
        switch name {
        case "key":
            guard !value.isEmpty, !value.contains("\0") else { throw bad("key is a name") }
            key = value
        case "table":
            guard Self.isTableName(value) else { throw bad("table is a lower-case name such as bellwether_lease or app.lease") }
            table = value
        case "sslmode":
            guard let mode = SSLMode(rawValue: value) else {
                throw bad("sslmode is " + SSLMode.allCases.map(\.rawValue).joined(separator: ", "))
            }
            sslMode = mode
        case "sslrootcert":
            guard !value.isEmpty else { throw bad("sslrootcert is a file") }
            sslRootCert = value
        case "application_name":
            guard value.utf8.count < 64, !value.contains("\0") else { throw bad("application_name is short") }
            applicationName = value
        case "connect_timeout":
            guard let seconds = Int(value), (0...3600).contains(seconds) else { throw bad("connect_timeout is seconds") }
            connectTimeout = seconds == 0 ? nil : seconds
        case "user": user = value.isEmpty ? nil : value
        case "password": password = value
        case "dbname": database = value.isEmpty ? nil : value
        case "port":
            guard let number = Int(value), (1...65535).contains(number) else { throw bad("PORT is 1-65535") }
            port = number
        default:
            throw bad("parameters are key, table, sslmode, sslrootcert, application_name, connect_timeout, "
                      + "user, password, dbname, port")
        }
    }

    /// A table name, optionally schema-qualified, of plain identifiers; it is
    /// quoted in the SQL all the same.
    static func isTableName(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && parts.allSatisfy { part in
            guard let first = part.unicodeScalars.first, part.utf8.count <= 63 else { return false }
            return (first == "_" || ("a"..."z").contains(first))
                && part.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
        }
    }

    /// The URL with any password replaced, for error messages.
    static func redacted(_ text: String) -> String {
        let query = text.firstIndex(of: "?") ?? text.endIndex
        var shown = String(text[..<query])
        if let scheme = shown.firstRange(of: "://"), let at = shown.lastIndex(of: "@"), scheme.upperBound <= at,
           let colon = shown[scheme.upperBound..<at].firstIndex(of: ":") {
            shown = String(shown[..<colon]) + ":***" + shown[at...]
        }
        guard query < text.endIndex else { return shown }
        let parameters = text[text.index(after: query)...].split(separator: "&", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("password=") ? "password=***" : String($0) }
        return shown + "?" + parameters.joined(separator: "&")
    }
}
