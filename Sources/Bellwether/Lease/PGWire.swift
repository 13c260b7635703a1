/// The PostgreSQL frontend/backend protocol 3.0, simple query protocol only:
/// what a client sends (this file), what the server answers
/// (`PGBackendParser`), and the rows of one query (`PGQueryResult`). Pure:
/// no sockets, no clock. No named prepared statements and no extended
/// protocol, so that it works through PgBouncer in transaction pooling mode;
/// values go into the query text through `literal` and `identifier`.
///
/// Every string is sent as UTF-8, and the startup message sets
/// client_encoding to UTF8 so that the server answers in it and the quoting
/// below is sound (in some legacy client encodings a multibyte character can
/// end in the byte of a quote or a backslash).
///
/// Nothing here traps: a string that cannot be sent (a NUL inside a
/// NUL-terminated field, a message longer than the protocol can frame) is a
/// `PGWireError`.
public enum PGWire {
    /// Protocol 3.0: major version in the high 16 bits, minor in the low.
    public static let protocolVersion: Int32 = 3 << 16
    /// The SSLRequest code: 1234 in the high 16 bits, 5679 in the low.
    public static let sslRequestCode: Int32 = 1234 << 16 | 5679

    // MARK: Frontend messages

    /// SSLRequest, sent before the startup message; the server answers with
    /// one byte, read by `PGBackendParser.nextSSLAnswer()`.
    public static func sslRequest() -> [UInt8] {
        int32(8) + int32(sslRequestCode)
    }

    /// StartupMessage: user, database, application_name, client_encoding=UTF8,
    /// then `options` (a name may appear only once, and not be empty: an empty
    /// name would end the list early).
    public static func startup(
        user: String, database: String, applicationName: String, options: [(String, String)] = []
    ) throws(PGWireError) -> [UInt8] {
        let parameters = [("user", user), ("database", database), ("application_name", applicationName),
                          ("client_encoding", "UTF8")] + options
        var body = int32(protocolVersion)
        var seen: Set<String> = []
        for (name, value) in parameters {
            guard !name.isEmpty else { throw PGWireError(description: "startup parameter with an empty name") }
            guard seen.insert(name).inserted else {
                throw PGWireError(description: "startup parameter \(name) given twice")
            }
            body += try cString(name, "startup parameter name") + cString(value, "startup parameter \(name)")
        }
        body.append(0)
        return try frame(nil, body)
    }

    /// PasswordMessage: the cleartext password, or "md5" followed by the
    /// hex digest, as AuthenticationCleartextPassword or MD5Password asked.
    public static func password(_ password: String) throws(PGWireError) -> [UInt8] {
        try frame("p", cString(password, "password"))
    }

    /// SASLInitialResponse: the chosen mechanism and the client's first
    /// message; nil data is sent as length -1 (no initial response).
    public static func saslInitialResponse(mechanism: String, data: [UInt8]?) throws(PGWireError) -> [UInt8] {
        var body = try cString(mechanism, "SASL mechanism")
        if let data {
            body += try int32(length: data.count) + data
        } else {
            body += int32(-1)
        }
        return try frame("p", body)
    }

    /// SASLResponse: a later client message of the SASL exchange.
    public static func saslResponse(_ data: [UInt8]) throws(PGWireError) -> [UInt8] {
        try frame("p", data)
    }

    /// Query, the simple query protocol: one string, which may hold several
    /// statements separated by semicolons (run in one implicit transaction).
    public static func query(_ sql: String) throws(PGWireError) -> [UInt8] {
        try frame("Q", cString(sql, "query"))
    }

    /// Terminate: the polite goodbye before closing the socket.
    public static func terminate() -> [UInt8] {
        [UInt8(ascii: "X")] + int32(4)
    }

    // MARK: Quoting

    /// `text` as an SQL string literal: single quotes doubled. If it holds a
    /// backslash, the escape-string form ` E'…'` with backslashes doubled too,
    /// which reads the same whatever standard_conforming_strings is (and, as
    /// libpq's PQescapeLiteral does, with a leading space so that it cannot
    /// run into a word before it). PostgreSQL text cannot hold NUL: refused.
    public static func literal(_ text: String) throws(PGWireError) -> String {
        let bytes = Array(text.utf8)
        guard !bytes.contains(0) else { throw PGWireError(description: "a string literal cannot contain NUL") }
        let backslash = UInt8(ascii: "\\"), quote = UInt8(ascii: "'")
        let escaping = bytes.contains(backslash)
        var out: [UInt8] = escaping ? Array(" E'".utf8) : [quote]
        for byte in bytes {
            if byte == quote || (escaping && byte == backslash) { out.append(byte) }
            out.append(byte)
        }
        out.append(quote)
        return String(decoding: out, as: UTF8.self)
    }

    /// `name` as a quoted identifier: double quotes doubled, case kept.
    /// Refused when empty (a zero-length identifier is an SQL error) or when
    /// it holds NUL. PostgreSQL truncates identifiers past 63 bytes.
    public static func identifier(_ name: String) throws(PGWireError) -> String {
        guard !name.isEmpty else { throw PGWireError(description: "an identifier cannot be empty") }
        guard !name.utf8.contains(0) else { throw PGWireError(description: "an identifier cannot contain NUL") }
        var out = "\""
        for character in name.unicodeScalars {
            if character == "\"" { out.unicodeScalars.append(character) }
            out.unicodeScalars.append(character)
        }
        return out + "\""
    }

    // MARK: Framing

    /// A message: the type byte (none for the startup and SSL messages), then
    /// the length, which counts itself but not the type byte.
    private static func frame(_ type: Unicode.Scalar?, _ body: [UInt8]) throws(PGWireError) -> [UInt8] {
        let header = try int32(length: body.count + 4)
        return (type.map { [UInt8(ascii: $0)] } ?? []) + header + body
    }

    /// A string and its terminating NUL; one with a NUL of its own would end
    /// early and shift every field after it, so it is refused.
    private static func cString(_ text: String, _ what: String) throws(PGWireError) -> [UInt8] {
        let bytes = Array(text.utf8)
        guard !bytes.contains(0) else { throw PGWireError(description: "\(what) cannot contain NUL") }
        return bytes + [0]
    }

    private static func int32(length: Int) throws(PGWireError) -> [UInt8] {
        guard let value = Int32(exactly: length) else {
            throw PGWireError(description: "message of \(length) bytes is too long to send")
        }
        return int32(value)
    }

    static func int32(_ value: Int32) -> [UInt8] {
        let bits = UInt32(bitPattern: value)
        return [UInt8(truncatingIfNeeded: bits >> 24), UInt8(truncatingIfNeeded: bits >> 16),
                UInt8(truncatingIfNeeded: bits >> 8), UInt8(truncatingIfNeeded: bits)]
    }
}

/// A frontend message that cannot be sent, or a backend message that breaks
/// the protocol. Either way the connection is no longer usable.
public struct PGWireError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
}
