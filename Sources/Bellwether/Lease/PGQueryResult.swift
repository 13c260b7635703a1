/// The answer to one simple Query, assembled from the backend messages that
/// follow it, up to and including ReadyForQuery.
///
/// A query string may hold several statements; `columns`, `rows` and `tag`
/// are those of the last statement that returned rows and the last that
/// completed, so that `BEGIN; UPDATE … RETURNING …; COMMIT` gives the
/// UPDATE's rows and the tag "COMMIT". When `error` is set, the server
/// skipped the rest of the string: rows may be partial, and if the string
/// opened a transaction block, `status` is `.failed` until ROLLBACK.
public struct PGQueryResult: Hashable, Sendable {
    /// More rows than a lease's queries ever return: a server that sends
    /// them is broken or hostile.
    public static let maximumRows = 1 << 16
    /// Notices past this many are dropped.
    public static let maximumNotices = 16

    public private(set) var columns: [String] = []
    /// Text-format values; nil is SQL NULL.
    public private(set) var rows: [[String?]] = []
    public private(set) var tag: String?
    public private(set) var error: PGDiagnostic?
    public private(set) var notices: [PGDiagnostic] = []
    /// Set by ReadyForQuery, which ends the answer.
    public private(set) var status: PGTransactionStatus?
    /// Whether a row description is open, its rows not yet completed.
    private var inRows = false

    public init() {}

    public var isComplete: Bool { status != nil }

    /// Takes the next message of the answer; true once it was ReadyForQuery.
    /// A message that cannot belong to a simple query's answer is an error.
    @discardableResult
    public mutating func consume(_ message: PGBackendMessage) throws(PGWireError) -> Bool {
        guard status == nil else { throw PGWireError(description: "message after ReadyForQuery") }
        switch message {
        case .rowDescription(let names):
            columns = names
            rows = []
            inRows = true
        case .dataRow(let values):
            guard inRows else { throw PGWireError(description: "DataRow without a RowDescription") }
            guard values.count == columns.count else {
                throw PGWireError(description: "DataRow of \(values.count) columns for \(columns.count) described")
            }
            guard rows.count < Self.maximumRows else {
                throw PGWireError(description: "more than \(Self.maximumRows) rows")
            }
            rows.append(values.map { $0.map { String(decoding: $0, as: UTF8.self) } })
        case .commandComplete(let completed):
            tag = completed
            inRows = false
        case .errorResponse(let diagnostic):
            if error == nil { error = diagnostic }
            inRows = false
        case .noticeResponse(let diagnostic):
            if notices.count < Self.maximumNotices { notices.append(diagnostic) }
        case .readyForQuery(let transaction):
            status = transaction
            return true
        case .emptyQueryResponse, .noData, .parameterStatus:
            // An empty string; extended-protocol noise; a setting the query changed.
            break
        case .other(type: UInt8(ascii: "A"), _):
            // NotificationResponse (LISTEN/NOTIFY) may come at any time.
            break
        case .other(type: let type, _) where [UInt8(ascii: "G"), UInt8(ascii: "H"), UInt8(ascii: "W")].contains(type):
            throw PGWireError(description: "COPY is not supported in a query's answer")
        case .other(type: let type, _):
            throw PGWireError(description: "unexpected message type \(PGBackendParser.name(type)) in a query's answer")
        case .authenticationOk, .authenticationCleartextPassword, .authenticationMD5Password, .authenticationSASL,
             .authenticationSASLContinue, .authenticationSASLFinal, .authenticationUnsupported, .backendKeyData:
            throw PGWireError(description: "unexpected authentication or key data in a query's answer")
        }
        return false
    }
}
