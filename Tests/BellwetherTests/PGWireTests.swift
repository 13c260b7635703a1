import Testing
@testable import Bellwether
import TestSupport

/// The PostgreSQL protocol 3.0 codec, ahead of the PostgreSQL lease: frontend
/// messages byte for byte as the protocol documentation lays them out,
/// backend messages from hand-built bytes (whole, split at every byte, one
/// byte at a time), a query's answer assembled, and hostile input that must
/// be an error and never a trap.
@Suite("PostgreSQL wire protocol")
struct PGWireTests {
    // MARK: Frontend

    @Test func sslRequestIsLength8AndCode80877103() {
        #expect(PGWire.sslRequest() == [0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])
    }

    @Test func startupMessageHasVersion3AndNulTerminatedPairs() throws {
        let pairs = "user\0bob\0database\0leases\0application_name\0bellwether\0client_encoding\0UTF8\0\0"
        // 4 (length) + 4 (version) + 75 (pairs and the final NUL) = 83 = 0x53.
        #expect(Array(pairs.utf8).count == 75)
        #expect(try PGWire.startup(user: "bob", database: "leases", applicationName: "bellwether")
                == [0, 0, 0, 0x53, 0, 3, 0, 0] + Array(pairs.utf8))

        let more = try PGWire.startup(user: "u", database: "d", applicationName: "a", options: [("options", "-c x=1")])
        let morePairs = "user\0u\0database\0d\0application_name\0a\0client_encoding\0UTF8\0options\0-c x=1\0\0"
        #expect(more == [0, 0, 0, UInt8(8 + morePairs.utf8.count), 0, 3, 0, 0] + Array(morePairs.utf8))
    }

    @Test func startupRefusesWhatWouldShiftItsFields() {
        #expect(throws: PGWireError.self) { try PGWire.startup(user: "bob\0database\0postgres", database: "d", applicationName: "a") }
        #expect(throws: PGWireError.self) { try PGWire.startup(user: "u", database: "d\0", applicationName: "a") }
        #expect(throws: PGWireError.self) { try PGWire.startup(user: "u", database: "d", applicationName: "a", options: [("", "x")]) }
        #expect(throws: PGWireError.self) { try PGWire.startup(user: "u", database: "d", applicationName: "a", options: [("user", "x")]) }
        #expect(throws: PGWireError.self) {
            try PGWire.startup(user: "u", database: "d", applicationName: "a", options: [("client_encoding", "LATIN1")])
        }
    }

    @Test func passwordMessage() throws {
        #expect(try PGWire.password("hunter2") == [0x70, 0, 0, 0, 12] + Array("hunter2\0".utf8))
        let md5 = "md5" + String(repeating: "0123456789abcdef", count: 2)
        #expect(try PGWire.password(md5) == [0x70, 0, 0, 0, 40] + Array(md5.utf8) + [0])
        #expect(throws: PGWireError.self) { try PGWire.password("a\0b") }
    }

    @Test func saslMessages() throws {
        let first = Array("n,,n=,r=abc".utf8)
        // 'p', length 4 + 14 ("SCRAM-SHA-256" and NUL) + 4 + 11 = 33.
        #expect(try PGWire.saslInitialResponse(mechanism: "SCRAM-SHA-256", data: first)
                == [0x70, 0, 0, 0, 33] + Array("SCRAM-SHA-256\0".utf8) + [0, 0, 0, 11] + first)
        #expect(try PGWire.saslInitialResponse(mechanism: "X", data: nil)
                == [0x70, 0, 0, 0, 10, 0x58, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(try PGWire.saslInitialResponse(mechanism: "X", data: [])
                == [0x70, 0, 0, 0, 10, 0x58, 0, 0, 0, 0, 0])
        #expect(try PGWire.saslResponse([1, 2, 3]) == [0x70, 0, 0, 0, 7, 1, 2, 3])
        #expect(throws: PGWireError.self) { try PGWire.saslInitialResponse(mechanism: "A\0B", data: nil) }
    }

    @Test func queryAndTerminate() throws {
        #expect(try PGWire.query("SELECT 1") == [0x51, 0, 0, 0, 13] + Array("SELECT 1\0".utf8))
        #expect(try PGWire.query("") == [0x51, 0, 0, 0, 5, 0])
        #expect(throws: PGWireError.self) { try PGWire.query("SELECT 1\0; DROP TABLE t") }
        #expect(PGWire.terminate() == [0x58, 0, 0, 0, 4])
    }

    // MARK: Backend

    /// A backend message: type, big-endian length counting itself, body.
    /// The first case of `messages` pins this framing with literal bytes.
    static func wire(_ type: Unicode.Scalar, _ body: [UInt8]) -> [UInt8] {
        [UInt8(ascii: type)] + PGWire.int32(Int32(body.count + 4)) + body
    }

    static func int32(_ value: Int32) -> [UInt8] { PGWire.int32(value) }
    static func int16(_ value: Int16) -> [UInt8] { [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)] }
    static func c(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

    /// RowDescription field: name, table OID, column number, type OID 23 (int4), size 4, modifier -1, text format.
    static func field(_ name: String) -> [UInt8] {
        c(name) + int32(16384) + int16(1) + int32(23) + int16(4) + int32(-1) + int16(0)
    }

    static let errorFields = c("SERROR") + c("VERROR") + c("C42P01") + c("Mrelation \"leases\" does not exist")
        + c("Fparse_relation.c") + c("L1392") + [0]

    static let messages: [([UInt8], PGBackendMessage)] = [
        ([0x52, 0, 0, 0, 8, 0, 0, 0, 0], .authenticationOk),
        (wire("R", int32(3)), .authenticationCleartextPassword),
        (wire("R", int32(5) + [0xDE, 0xAD, 0xBE, 0xEF]), .authenticationMD5Password(salt: [0xDE, 0xAD, 0xBE, 0xEF])),
        (wire("R", int32(10) + c("SCRAM-SHA-256-PLUS") + c("SCRAM-SHA-256") + [0]),
         .authenticationSASL(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])),
        (wire("R", int32(11) + Array("r=abc,s=c2FsdA==,i=4096".utf8)),
         .authenticationSASLContinue(Array("r=abc,s=c2FsdA==,i=4096".utf8))),
        (wire("R", int32(12) + Array("v=c2ln".utf8)), .authenticationSASLFinal(Array("v=c2ln".utf8))),
        (wire("R", int32(7)), .authenticationUnsupported(7)),
        (wire("R", int32(8) + [1, 2, 3]), .authenticationUnsupported(8)),
        (wire("S", c("server_version") + c("15.18")), .parameterStatus(name: "server_version", value: "15.18")),
        (wire("K", int32(4242) + int32(-559038737)), .backendKeyData(processID: 4242, secretKey: -559038737)),
        ([0x5A, 0, 0, 0, 5, 0x49], .readyForQuery(.idle)),
        (wire("Z", [0x54]), .readyForQuery(.inTransaction)),
        (wire("Z", [0x45]), .readyForQuery(.failed)),
        (wire("T", int16(2) + field("holder") + field("expires")), .rowDescription(["holder", "expires"])),
        (wire("T", int16(0)), .rowDescription([])),
        (wire("D", int16(3) + int32(2) + Array("ab".utf8) + int32(-1) + int32(0)), .dataRow([Array("ab".utf8), nil, []])),
        (wire("C", c("UPDATE 1")), .commandComplete("UPDATE 1")),
        (wire("I", []), .emptyQueryResponse),
        (wire("E", errorFields), .errorResponse(PGDiagnostic(fields: [
            UInt8(ascii: "S"): "ERROR", UInt8(ascii: "V"): "ERROR", UInt8(ascii: "C"): "42P01",
            UInt8(ascii: "M"): "relation \"leases\" does not exist", UInt8(ascii: "F"): "parse_relation.c",
            UInt8(ascii: "L"): "1392",
        ]))),
        (wire("N", c("SNOTICE") + c("C00000") + c("Mhello") + [0]), .noticeResponse(PGDiagnostic(fields: [
            UInt8(ascii: "S"): "NOTICE", UInt8(ascii: "C"): "00000", UInt8(ascii: "M"): "hello",
        ]))),
        (wire("n", []), .noData),
        (wire("A", int32(7) + c("chan") + c("payload")), .other(type: UInt8(ascii: "A"), body: int32(7) + c("chan") + c("payload"))),
    ]

    @Test func wholeMessages() throws {
        for (bytes, expected) in Self.messages {
            var parser = PGBackendParser()
            parser.feed(bytes)
            #expect(try parser.next() == expected, "\(bytes)")
            #expect(try parser.next() == nil)
        }
    }

    @Test func everyMessageSplitAtEveryByteBoundaryAndOneByteAtATime() throws {
        let bytes = Self.messages.flatMap(\.0)
        let expected = Self.messages.map(\.1)
        for cut in 0...bytes.count {
            var parser = PGBackendParser()
            var parsed: [PGBackendMessage] = []
            parser.feed(bytes[..<cut])
            while let message = try parser.next() { parsed.append(message) }
            parser.feed(bytes[cut...])
            while let message = try parser.next() { parsed.append(message) }
            #expect(parsed == expected, "cut at \(cut)")
        }
        var parser = PGBackendParser()
        var parsed: [PGBackendMessage] = []
        for byte in bytes {
            parser.feed([byte])
            while let message = try parser.next() { parsed.append(message) }
        }
        #expect(parsed == expected)
    }

    @Test func diagnosticFieldsByCode() {
        guard case .errorResponse(let error)? = try? { var p = PGBackendParser(); p.feed(Self.wire("E", Self.errorFields)); return try p.next() }() else {
            Issue.record("no ErrorResponse")
            return
        }
        #expect(error.sqlState == "42P01")
        #expect(error.message == "relation \"leases\" does not exist")
        #expect(error.severity == "ERROR")
        #expect(error.detail == nil && error.hint == nil)
        #expect(error.description == "ERROR 42P01: relation \"leases\" does not exist")
        // V, never localized, wins over S.
        let localized = PGDiagnostic(fields: [UInt8(ascii: "S"): "FEHLER", UInt8(ascii: "V"): "ERROR",
                                              UInt8(ascii: "D"): "Key (k)=(1) already exists.", UInt8(ascii: "H"): "retry"])
        #expect(localized.severity == "ERROR")
        #expect(localized.detail == "Key (k)=(1) already exists.")
        #expect(localized.hint == "retry")
    }

    @Test func sslAnswerIsOneByte() throws {
        var parser = PGBackendParser()
        #expect(try parser.nextSSLAnswer() == nil)
        parser.feed([UInt8(ascii: "N")] + Self.wire("R", Self.int32(0)))
        #expect(try parser.nextSSLAnswer() == .refused)
        #expect(try parser.next() == .authenticationOk)

        var accepting = PGBackendParser()
        accepting.feed([UInt8(ascii: "S")])
        #expect(try accepting.nextSSLAnswer() == .accepted)

        // Bytes after 'S' came before the handshake: possibly injected.
        var injected = PGBackendParser()
        injected.feed([UInt8(ascii: "S")] + Self.wire("R", Self.int32(0)))
        #expect(throws: PGWireError.self) { try injected.nextSSLAnswer() }

        // A server that does not know SSLRequest answers with an ErrorResponse.
        var old = PGBackendParser()
        old.feed(Self.wire("E", Self.errorFields))
        #expect(throws: PGWireError.self) { try old.nextSSLAnswer() }
    }

    // MARK: Hostile input

    static let malformed: [(String, [UInt8])] = [
        ("negative length", [0x5A, 0xFF, 0xFF, 0xFF, 0xFB, 0x49]),
        ("length 0", [0x5A, 0, 0, 0, 0]),
        ("length 3", [0x43, 0, 0, 0, 3]),
        ("length past the limit, body not sent", [0x44] + int32(Int32(PGBackendParser.maximumMessage) + 5)),
        ("length Int32.max", [0x44, 0x7F, 0xFF, 0xFF, 0xFF]),
        ("not PostgreSQL at all", Array("HTTP/1.1 400 Bad Request\r\n".utf8)),
        ("AuthenticationOk with a trailing byte", wire("R", int32(0) + [0])),
        ("Authentication without its code", wire("R", [0, 0])),
        ("MD5 salt of 3 bytes", wire("R", int32(5) + [1, 2, 3])),
        ("SASL list without its empty name", wire("R", int32(10) + c("SCRAM-SHA-256"))),
        ("ParameterStatus without its value", wire("S", c("TimeZone"))),
        ("unterminated string", wire("C", Array("SELECT 1".utf8))),
        ("BackendKeyData of 6 bytes", wire("K", int32(1) + [0, 0])),
        ("ReadyForQuery with status X", wire("Z", [0x58])),
        ("ReadyForQuery without status", wire("Z", [])),
        ("RowDescription of 2 fields, 1 sent", wire("T", int16(2) + field("a"))),
        ("RowDescription with count -1", wire("T", int16(-1))),
        ("RowDescription field cut short", wire("T", int16(1) + c("a") + int32(0))),
        ("DataRow with count -2", wire("D", int16(-2))),
        ("DataRow column length -2", wire("D", int16(1) + int32(-2))),
        ("DataRow column past the message", wire("D", int16(1) + int32(10) + [1, 2, 3])),
        ("DataRow column of Int32.max", wire("D", int16(1) + int32(Int32.max))),
        ("DataRow with bytes after its columns", wire("D", int16(0) + [9])),
        ("ErrorResponse without its final NUL", wire("E", c("SERROR") + c("Mx"))),
        ("ErrorResponse field without its string", wire("E", [UInt8(ascii: "M")] + Array("oops".utf8))),
        ("EmptyQueryResponse with a body", wire("I", [0])),
    ]

    @Test func malformedMessagesAreErrors() {
        for (name, bytes) in Self.malformed {
            var parser = PGBackendParser()
            parser.feed(bytes)
            #expect(throws: PGWireError.self, "\(name)") { _ = try parser.next() }
        }
    }

    @Test func largestMessageIsAcceptedAndOneByteMoreIsNot() throws {
        let body = [UInt8](repeating: 7, count: PGBackendParser.maximumMessage)
        var parser = PGBackendParser()
        parser.feed(Self.wire("d", body))
        #expect(try parser.next() == .other(type: UInt8(ascii: "d"), body: body))
        parser.feed([UInt8(ascii: "d")] + Self.int32(Int32(body.count + 5)))
        #expect(throws: PGWireError.self) { _ = try parser.next() }
    }

    @Test func randomAndMutatedBytesNeverTrap() {
        var rng = SplitMix(seed: 5432)
        let valid = Self.messages.flatMap(\.0)
        let alphabet: [UInt8] = Array("RSKZTDCIENn".utf8) + [0, 0, 0, 1, 2, 4, 5, 8, 0xFF, 0x7F]
        for round in 0..<20_000 {
            var parser = PGBackendParser()
            if round % 2 == 0 {
                parser.feed((0..<(1 + rng.below(32))).map { _ in alphabet[rng.below(alphabet.count)] })
            } else {
                var bytes = valid
                for _ in 0..<(1 + rng.below(4)) { bytes[rng.below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next()) }
                parser.feed(bytes)
            }
            for _ in 0..<Self.messages.count + 1 { if (try? parser.next()) == nil { break } }
            var result = PGQueryResult()
            var again = parser
            while let message = try? again.next() { if (try? result.consume(message)) == nil { break } }
        }
    }

    // MARK: A query's answer

    @Test func selectOfTwoRowsWithANull() throws {
        let answer: [PGBackendMessage] = [
            .rowDescription(["holder", "token"]),
            .dataRow([Array("worker-1".utf8), Array("17".utf8)]),
            .dataRow([Array("worker-2".utf8), nil]),
            .commandComplete("SELECT 2"),
            .readyForQuery(.idle),
        ]
        // Through the parser, one byte at a time, as a socket might deliver it.
        let bytes = Self.wire("T", Self.int16(2) + Self.field("holder") + Self.field("token"))
            + Self.wire("D", Self.int16(2) + Self.int32(8) + Array("worker-1".utf8) + Self.int32(2) + Array("17".utf8))
            + Self.wire("D", Self.int16(2) + Self.int32(8) + Array("worker-2".utf8) + Self.int32(-1))
            + Self.wire("C", Self.c("SELECT 2")) + Self.wire("Z", [UInt8(ascii: "I")])
        var parser = PGBackendParser()
        var result = PGQueryResult()
        var consumed: [PGBackendMessage] = []
        for byte in bytes {
            parser.feed([byte])
            while let message = try parser.next() {
                consumed.append(message)
                let done = try result.consume(message)
                #expect(done == (consumed.count == answer.count))
            }
        }
        #expect(consumed == answer)
        #expect(result.isComplete)
        #expect(result.columns == ["holder", "token"])
        #expect(result.rows == [["worker-1", "17"], ["worker-2", nil]])
        #expect(result.tag == "SELECT 2")
        #expect(result.error == nil)
        #expect(result.status == .idle)
    }

    @Test func errorThenReadyForQuery() throws {
        var parser = PGBackendParser()
        parser.feed(Self.wire("N", Self.c("SNOTICE") + Self.c("Mskipping") + [0])
                    + Self.wire("E", Self.errorFields) + Self.wire("Z", [UInt8(ascii: "I")]))
        var result = PGQueryResult()
        while let message = try parser.next() {
            #expect(!result.isComplete)
            try result.consume(message)
        }
        #expect(result.isComplete)
        #expect(result.error?.sqlState == "42P01")
        #expect(result.error?.message == "relation \"leases\" does not exist")
        #expect(result.notices.map(\.message) == ["skipping"])
        #expect(result.rows.isEmpty && result.tag == nil)
        #expect(result.status == .idle)
    }

    @Test func severalStatementsKeepTheRowsOfTheLastThatReturnedAny() throws {
        var result = PGQueryResult()
        for message: PGBackendMessage in [
            .commandComplete("BEGIN"), .parameterStatus(name: "TimeZone", value: "UTC"),
            .rowDescription(["token"]), .dataRow([Array("18".utf8)]), .commandComplete("UPDATE 1"),
            .other(type: UInt8(ascii: "A"), body: []), .commandComplete("COMMIT"), .emptyQueryResponse,
        ] {
            #expect(try result.consume(message) == false)
        }
        #expect(try result.consume(.readyForQuery(.idle)))
        #expect(result.rows == [["18"]])
        #expect(result.tag == "COMMIT")
    }

    @Test func answersThatCannotBelongToAQueryAreErrors() throws {
        let broken: [(String, [PGBackendMessage])] = [
            ("DataRow before RowDescription", [.dataRow([nil])]),
            ("DataRow after CommandComplete", [.rowDescription(["a"]), .commandComplete("SELECT 0"), .dataRow([nil])]),
            ("DataRow of the wrong width", [.rowDescription(["a", "b"]), .dataRow([nil])]),
            ("anything after ReadyForQuery", [.readyForQuery(.idle), .commandComplete("SELECT 1")]),
            ("authentication", [.authenticationOk]),
            ("key data", [.backendKeyData(processID: 1, secretKey: 2)]),
            ("COPY", [.other(type: UInt8(ascii: "H"), body: [0, 0, 0])]),
            ("unknown type", [.other(type: UInt8(ascii: "?"), body: [])]),
        ]
        for (name, messages) in broken {
            var result = PGQueryResult()
            #expect(throws: PGWireError.self, "\(name)") { for message in messages { try result.consume(message) } }
        }
        var flood = PGQueryResult()
        try flood.consume(.rowDescription(["a"]))
        for _ in 0..<PGQueryResult.maximumRows { try flood.consume(.dataRow([[]])) }
        #expect(throws: PGWireError.self) { try flood.consume(.dataRow([[]])) }
    }

    /// What PostgreSQL 15.18 sent, read off the socket, for
    /// `SELECT name, holder FROM leases ORDER BY name` (two text columns, a
    /// NULL in the first row) and for `SELECT * FROM nope`.
    static let capturedSelect = hex([
            "54 00 00 00 36 00 02 6e 61 6d 65 00 00 00 40 04 00 01 00 00 00 19 ff ff ff ff ff ff 00 00 68 6f",
            "6c 64 65 72 00 00 00 40 04 00 02 00 00 00 19 ff ff ff ff ff ff 00 00 44 00 00 00 13 00 02 00 00",
            "00 05 6f 74 68 65 72 ff ff ff ff 44 00 00 00 1b 00 02 00 00 00 05 73 63 68 65 64 00 00 00 08 77",
            "6f 72 6b 65 72 2d 31 43 00 00 00 0d 53 45 4c 45 43 54 20 32 00 5a 00 00 00 05 49",
    ])
    static let capturedError = hex([
            "45 00 00 00 67 53 45 52 52 4f 52 00 56 45 52 52 4f 52 00 43 34 32 50 30 31 00 4d 72 65 6c 61 74",
            "69 6f 6e 20 22 6e 6f 70 65 22 20 64 6f 65 73 20 6e 6f 74 20 65 78 69 73 74 00 50 31 35 00 46 70",
            "61 72 73 65 5f 72 65 6c 61 74 69 6f 6e 2e 63 00 4c 31 33 39 32 00 52 70 61 72 73 65 72 4f 70 65",
            "6e 54 61 62 6c 65 00 00 5a 00 00 00 05 49",
    ])

    static func hex(_ lines: [String]) -> [UInt8] {
        lines.joined(separator: " ").split(separator: " ").compactMap { UInt8($0, radix: 16) }
    }

    @Test func answersCapturedFromPostgreSQL() throws {
        var parser = PGBackendParser()
        var select = PGQueryResult()
        parser.feed(Self.capturedSelect)
        while let message = try parser.next() { try select.consume(message) }
        #expect(select.isComplete)
        #expect(select.columns == ["name", "holder"])
        #expect(select.rows == [["other", nil], ["sched", "worker-1"]])
        #expect(select.tag == "SELECT 2")

        var failed = PGQueryResult()
        parser.feed(Self.capturedError)
        while let message = try parser.next() { try failed.consume(message) }
        #expect(failed.isComplete)
        #expect(failed.status == .idle)
        #expect(failed.error?.sqlState == "42P01")
        #expect(failed.error?.message == "relation \"nope\" does not exist")
        #expect(failed.error?.fields[UInt8(ascii: "R")] == "parserOpenTable")
    }

    // MARK: Quoting

    @Test func literals() throws {
        #expect(try PGWire.literal("") == "''")
        #expect(try PGWire.literal("worker-1") == "'worker-1'")
        #expect(try PGWire.literal("o'clock") == "'o''clock'")
        #expect(try PGWire.literal("'; DROP TABLE leases; --") == "'''; DROP TABLE leases; --'")
        #expect(try PGWire.literal("ünïcødé ☃") == "'ünïcødé ☃'")
        // With a backslash: E'' with it doubled, right whatever standard_conforming_strings is.
        #expect(try PGWire.literal(#"a\b"#) == #" E'a\\b'"#)
        #expect(try PGWire.literal(#"\'"#) == #" E'\\'''"#)
        #expect(throws: PGWireError.self) { try PGWire.literal("a\0b") }
    }

    @Test func identifiers() throws {
        #expect(try PGWire.identifier("leases") == "\"leases\"")
        #expect(try PGWire.identifier("Mixed Case") == "\"Mixed Case\"")
        #expect(try PGWire.identifier("a\"b") == "\"a\"\"b\"")
        #expect(try PGWire.identifier(#"x\y"#) == #""x\y""#)
        #expect(throws: PGWireError.self) { try PGWire.identifier("") }
        #expect(throws: PGWireError.self) { try PGWire.identifier("a\0") }
    }
}
