/// What a PostgreSQL server sends, for the startup and the simple query
/// protocol; every other message type is kept whole as `.other`.
public enum PGBackendMessage: Hashable, Sendable {
    case authenticationOk
    case authenticationCleartextPassword
    /// Always four bytes.
    case authenticationMD5Password(salt: [UInt8])
    /// The mechanisms the server offers, in its order of preference.
    case authenticationSASL(mechanisms: [String])
    case authenticationSASLContinue([UInt8])
    case authenticationSASLFinal([UInt8])
    /// Kerberos, GSSAPI, SSPI and any request this client cannot answer.
    case authenticationUnsupported(Int32)
    case parameterStatus(name: String, value: String)
    case backendKeyData(processID: Int32, secretKey: Int32)
    case readyForQuery(PGTransactionStatus)
    /// The column names.
    case rowDescription([String])
    /// The columns in text format; nil is SQL NULL.
    case dataRow([[UInt8]?])
    /// The command tag: "SELECT 2", "INSERT 0 1", "UPDATE 1".
    case commandComplete(String)
    case emptyQueryResponse
    case errorResponse(PGDiagnostic)
    case noticeResponse(PGDiagnostic)
    case noData
    case other(type: UInt8, body: [UInt8])
}

/// ReadyForQuery's status: where the session stands between queries.
public enum PGTransactionStatus: Hashable, Sendable {
    /// 'I': not in a transaction block.
    case idle
    /// 'T': in a transaction block.
    case inTransaction
    /// 'E': in a failed transaction block; queries are refused until ROLLBACK.
    case failed
}

/// The fields of an ErrorResponse or NoticeResponse, by their code byte.
public struct PGDiagnostic: Hashable, Sendable, CustomStringConvertible {
    public var fields: [UInt8: String]

    public init(fields: [UInt8: String]) { self.fields = fields }

    /// ERROR, FATAL, PANIC, WARNING, NOTICE...: V, never localized (9.6+),
    /// else S, which may be.
    public var severity: String { fields[UInt8(ascii: "V")] ?? fields[UInt8(ascii: "S")] ?? "" }
    /// The SQLSTATE, e.g. 23505 for a unique violation, 40001 for a serialization failure.
    public var sqlState: String { fields[UInt8(ascii: "C")] ?? "" }
    public var message: String { fields[UInt8(ascii: "M")] ?? "" }
    public var detail: String? { fields[UInt8(ascii: "D")] }
    public var hint: String? { fields[UInt8(ascii: "H")] }

    /// "ERROR 42P01: relation "x" does not exist", with the detail if any.
    public var description: String {
        "\(severity) \(sqlState): \(message)" + (detail.map { " (\($0))" } ?? "")
    }
}

/// The server's one-byte answer to SSLRequest.
public enum PGSSLAnswer: Hashable, Sendable {
    /// 'S': start the TLS handshake.
    case accepted
    /// 'N': carry on in plaintext (or give up, if TLS was required).
    case refused
}

/// Backend messages parsed incrementally from whatever bytes have arrived:
/// a type byte, a length that counts itself, the body. The parser never
/// traps on hostile input: a length out of bounds, a field running past its
/// message, bytes left over after the last field are each a `PGWireError`,
/// and a length is checked before its body is waited for.
public struct PGBackendParser: IncrementalParser, Sendable {
    /// The largest body accepted. A lease's replies are a few hundred bytes.
    public static let maximumMessage = 1 << 20

    /// What has arrived; `start` is where the next message begins.
    var buffer: [UInt8] = []
    var start = 0

    public init() {}

    /// The answer to SSLRequest, nil if it has not arrived. Call it once,
    /// before any `next()`. After 'S' nothing more may have arrived: bytes
    /// sent ahead of the TLS handshake did not come through it, and could
    /// have been injected by a man in the middle (CVE-2021-23222).
    public mutating func nextSSLAnswer() throws(PGWireError) -> PGSSLAnswer? {
        guard start < buffer.count else { return nil }
        let byte = buffer[start]
        switch byte {
        case UInt8(ascii: "S"):
            guard start + 1 == buffer.count else {
                throw PGWireError(description: "bytes received after the server accepted SSL, before the handshake")
            }
            start += 1
            return .accepted
        case UInt8(ascii: "N"):
            start += 1
            return .refused
        default:
            throw PGWireError(description: "answer to SSLRequest is byte \(byte), not S or N")
        }
    }

    /// The next complete message, nil if more bytes are needed.
    public mutating func next() throws(PGWireError) -> PGBackendMessage? {
        guard buffer.count - start >= 5 else { return nil }
        let type = buffer[start]
        var header = PGBodyReader(buffer[(start + 1)..<(start + 5)], "message header")
        let length = try header.int32()
        guard length >= 4, Int(length) - 4 <= Self.maximumMessage else {
            throw PGWireError(description: "message type \(Self.name(type)) has bad length \(length)")
        }
        let end = start + 1 + Int(length)
        guard end <= buffer.count else { return nil }
        let message = try Self.decode(type, buffer[(start + 5)..<end])
        start = end
        return message
    }

    private static func decode(_ type: UInt8, _ body: ArraySlice<UInt8>) throws(PGWireError) -> PGBackendMessage {
        var reader = PGBodyReader(body, name(type))
        let message: PGBackendMessage
        switch type {
        case UInt8(ascii: "R"):
            let code = try reader.int32()
            switch code {
            case 0: message = .authenticationOk
            case 3: message = .authenticationCleartextPassword
            case 5: message = .authenticationMD5Password(salt: try reader.bytes(4))
            case 10:
                // Names, each NUL-terminated, then an empty name.
                var mechanisms: [String] = []
                while true {
                    let mechanism = try reader.cString()
                    if mechanism.isEmpty { break }
                    mechanisms.append(mechanism)
                }
                message = .authenticationSASL(mechanisms: mechanisms)
            case 11: message = .authenticationSASLContinue(reader.rest())
            case 12: message = .authenticationSASLFinal(reader.rest())
            default: return .authenticationUnsupported(code)
            }
        case UInt8(ascii: "S"):
            message = .parameterStatus(name: try reader.cString(), value: try reader.cString())
        case UInt8(ascii: "K"):
            message = .backendKeyData(processID: try reader.int32(), secretKey: try reader.int32())
        case UInt8(ascii: "Z"):
            switch try reader.byte() {
            case UInt8(ascii: "I"): message = .readyForQuery(.idle)
            case UInt8(ascii: "T"): message = .readyForQuery(.inTransaction)
            case UInt8(ascii: "E"): message = .readyForQuery(.failed)
            case let status: throw PGWireError(description: "ReadyForQuery with unknown status byte \(status)")
            }
        case UInt8(ascii: "T"):
            let count = try reader.count()
            var names: [String] = []
            for _ in 0..<count {
                names.append(try reader.cString())
                // Table OID, column number, type OID, type size, type modifier, format.
                _ = try reader.bytes(4 + 2 + 4 + 2 + 4 + 2)
            }
            message = .rowDescription(names)
        case UInt8(ascii: "D"):
            let count = try reader.count()
            var columns: [[UInt8]?] = []
            for _ in 0..<count {
                let length = try reader.int32()
                guard length >= -1 else { throw PGWireError(description: "DataRow column length \(length)") }
                columns.append(length == -1 ? nil : try reader.bytes(Int(length)))
            }
            message = .dataRow(columns)
        case UInt8(ascii: "C"): message = .commandComplete(try reader.cString())
        case UInt8(ascii: "I"): message = .emptyQueryResponse
        case UInt8(ascii: "n"): message = .noData
        case UInt8(ascii: "E"): message = .errorResponse(try reader.diagnostic())
        case UInt8(ascii: "N"): message = .noticeResponse(try reader.diagnostic())
        default: return .other(type: type, body: Array(body))
        }
        try reader.finish()
        return message
    }

    /// The type byte as a character when it is printable, for messages.
    static func name(_ type: UInt8) -> String {
        (0x21...0x7E).contains(type) ? "'\(Character(Unicode.Scalar(type)))'" : "byte \(type)"
    }
}

/// A cursor over one message body: every read past its end, and every byte
/// left unread at `finish`, is an error naming the message.
struct PGBodyReader {
    private let body: ArraySlice<UInt8>
    private var position: Int
    private let what: String

    init(_ body: ArraySlice<UInt8>, _ what: String) {
        self.body = body
        position = body.startIndex
        self.what = what
    }

    private func truncated() -> PGWireError { PGWireError(description: "message \(what) is truncated") }

    mutating func byte() throws(PGWireError) -> UInt8 {
        guard position < body.endIndex else { throw truncated() }
        defer { position += 1 }
        return body[position]
    }

    mutating func int16() throws(PGWireError) -> Int16 {
        let high = try byte(), low = try byte()
        return Int16(bitPattern: UInt16(high) << 8 | UInt16(low))
    }

    mutating func int32() throws(PGWireError) -> Int32 {
        var bits: UInt32 = 0
        for _ in 0..<4 { bits = bits << 8 | UInt32(try byte()) }
        return Int32(bitPattern: bits)
    }

    /// An Int16 count of fields or columns, which cannot be negative.
    mutating func count() throws(PGWireError) -> Int {
        let count = try int16()
        guard count >= 0 else { throw PGWireError(description: "message \(what) has count \(count)") }
        return Int(count)
    }

    mutating func bytes(_ count: Int) throws(PGWireError) -> [UInt8] {
        guard count >= 0, count <= body.endIndex - position else { throw truncated() }
        defer { position += count }
        return Array(body[position..<(position + count)])
    }

    /// A NUL-terminated string, as UTF-8 (the session's client_encoding).
    mutating func cString() throws(PGWireError) -> String {
        guard let end = body[position...].firstIndex(of: 0) else { throw truncated() }
        defer { position = end + 1 }
        return String(decoding: body[position..<end], as: UTF8.self)
    }

    mutating func rest() -> [UInt8] {
        defer { position = body.endIndex }
        return Array(body[position...])
    }

    /// Error and notice fields: a code byte and a string each, then a NUL.
    mutating func diagnostic() throws(PGWireError) -> PGDiagnostic {
        var fields: [UInt8: String] = [:]
        while true {
            let code = try byte()
            if code == 0 { return PGDiagnostic(fields: fields) }
            fields[code] = try cString()
        }
    }

    func finish() throws(PGWireError) {
        guard position == body.endIndex else {
            throw PGWireError(description: "message \(what) has \(body.endIndex - position) bytes after its last field")
        }
    }
}
