import Testing
@testable import Bellwether
import TestSupport

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The SCRAM-SHA-256 client a PostgreSQL lease will log in with: RFC 7677's
/// worked example replayed byte for byte, and servers that lie or babble.
/// The example's ServerSignature, v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,
/// was recomputed with Python's hashlib and hmac from the RFC's inputs.
@Suite("SCRAM-SHA-256")
struct ScramTests {
    static let rfcNonce = "rOprNGfwEbeRWgbNEkqO"
    static let rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    static let rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

    /// A client of RFC 7677's example that has answered the server-first-message.
    static func rfcClientAwaitingFinal() throws -> ScramClient {
        var client = ScramClient(username: "user", password: bytes("pencil"), clientNonce: rfcNonce)
        _ = try client.clientFinalMessage(serverFirst: bytes(rfcServerFirst))
        return client
    }

    @Test func rfc7677Example() throws {
        var client = ScramClient(username: "user", password: bytes("pencil"), clientNonce: Self.rfcNonce)
        #expect(text(client.clientFirstMessage) == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let final = try client.clientFinalMessage(serverFirst: bytes(Self.rfcServerFirst))
        #expect(text(final) == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        #expect(!client.isAuthenticated)
        try client.verifyServerFinal(bytes(Self.rfcServerFinal))
        #expect(client.isAuthenticated)
    }

    @Test func postgresSendsAnEmptyUserName() {
        let client = ScramClient(password: bytes("pencil"), clientNonce: Self.rfcNonce)
        #expect(text(client.clientFirstMessage) == "n,,n=,r=rOprNGfwEbeRWgbNEkqO")
        #expect(ScramClient.mechanism == "SCRAM-SHA-256")
    }

    @Test func userNamesAreEscaped() {
        let client = ScramClient(username: "a=b,c", password: [], clientNonce: "x")
        #expect(text(client.clientFirstMessage) == "n,,n=a=3Db=2Cc,r=x")
    }

    @Test func nonceFromRandomBytesIsAcceptedBase64() {
        let nonce = ScramClient.nonce(from: (0..<18).map { UInt8(truncatingIfNeeded: $0 &* 14 &+ 250) })
        #expect(nonce.utf8.count == 24)
        #expect(text(ScramClient(password: [], clientNonce: nonce).clientFirstMessage) == "n,,n=,r=" + nonce)
    }

    @Test func wrongServerSignatureIsRefused() throws {
        var client = try Self.rfcClientAwaitingFinal()
        // The RFC's signature with its first byte changed (0xea -> 0xeb).
        #expect(throws: ScramError.signatureMismatch) {
            try client.verifyServerFinal(bytes("v=67riTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
        }
        #expect(!client.isAuthenticated)
        #expect(throws: ScramError.outOfTurn) { try client.verifyServerFinal(bytes(Self.rfcServerFinal)) }
        #expect(ScramError.signatureMismatch.description == "server's SCRAM signature does not match")
    }

    @Test func serverErrorSurfaces() throws {
        var client = try Self.rfcClientAwaitingFinal()
        #expect(throws: ScramError.serverError("invalid-proof")) { try client.verifyServerFinal(bytes("e=invalid-proof")) }
        #expect(ScramError.serverError("invalid-proof").description == "server refused SCRAM authentication: invalid-proof")
        #expect(!client.isAuthenticated)
    }

    @Test func messagesOutOfTurnAreRefused() throws {
        var fresh = ScramClient(password: bytes("pencil"), clientNonce: Self.rfcNonce)
        #expect(throws: ScramError.outOfTurn) { try fresh.verifyServerFinal(bytes(Self.rfcServerFinal)) }
        var answered = try Self.rfcClientAwaitingFinal()
        #expect(throws: ScramError.outOfTurn) { _ = try answered.clientFinalMessage(serverFirst: bytes(Self.rfcServerFirst)) }
        var done = try Self.rfcClientAwaitingFinal()
        try done.verifyServerFinal(bytes(Self.rfcServerFinal))
        #expect(throws: ScramError.outOfTurn) { try done.verifyServerFinal(bytes(Self.rfcServerFinal)) }
        #expect(done.isAuthenticated)
    }

    static let salt = "s=W22ZaJ0SNY7soEsUEjb6gQ=="
    static let ours = "r=rOprNGfwEbeRWgbNEkqO"

    static let hostileFirsts: [(String, ScramError)] = [
        ("", .malformedServerFirst),
        (",", .malformedServerFirst),
        ("r=", .malformedServerFirst),
        ("\0\0\0", .malformedServerFirst),
        ("e=other-error", .malformedServerFirst),
        ("\(ours)%x", .malformedServerFirst),
        ("\(ours)%x,\(salt)", .malformedServerFirst),
        ("\(salt),\(ours)%x,i=4096", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=-1", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=+4096", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=4096 ", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=4096,", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=4096,=x", .malformedServerFirst),
        ("\(ours) x,\(salt),i=4096", .malformedServerFirst),
        ("\(ours)\u{7f},\(salt),i=4096", .malformedServerFirst),
        ("\(ours)é,\(salt),i=4096", .malformedServerFirst),
        ("\(ours)%x,\(salt),i=0", .iterationCount("0")),
        ("\(ours)%x,\(salt),i=10000001", .iterationCount("10000001")),
        ("\(ours)%x,\(salt),i=\(String(repeating: "9", count: 80))",
         .iterationCount(String(repeating: "9", count: 64) + "...")),
        ("\(ours)%x,s=,i=4096", .invalidSalt),
        ("\(ours)%x,s=!!!!,i=4096", .invalidSalt),
        ("\(ours)%x,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096", .invalidSalt),
        ("\(ours),\(salt),i=4096", .nonceMismatch),
        ("r=XOprNGfwEbeRWgbNEkqO%x,\(salt),i=4096", .nonceMismatch),
        ("r=rOprNG,\(salt),i=4096", .nonceMismatch),
        ("m=channel,\(ours)%x,\(salt),i=4096", .unsupportedExtension),
    ]

    @Test(arguments: hostileFirsts)
    func hostileServerFirstIsAnError(_ message: String, _ error: ScramError) {
        var client = ScramClient(username: "user", password: bytes("pencil"), clientNonce: Self.rfcNonce)
        #expect(throws: error, "\(message.debugDescription)") { _ = try client.clientFinalMessage(serverFirst: bytes(message)) }
        #expect(throws: ScramError.outOfTurn) { _ = try client.clientFinalMessage(serverFirst: bytes(Self.rfcServerFirst)) }
    }

    @Test func unknownExtensionsAfterTheIterationCountAreIgnored() throws {
        var client = ScramClient(username: "user", password: bytes("pencil"), clientNonce: Self.rfcNonce)
        _ = try client.clientFinalMessage(serverFirst: bytes(Self.rfcServerFirst + ",x=future"))
        // The extension is part of what the server signs, so the RFC's signature no longer fits.
        #expect(throws: ScramError.signatureMismatch) { try client.verifyServerFinal(bytes(Self.rfcServerFinal)) }
    }

    @Test(arguments: [
        ("", ScramError.malformedServerFinal),
        ("v=", .malformedServerFinal),
        ("v=!!!!", .malformedServerFinal),
        ("v=AAAA", .malformedServerFinal),
        ("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", .malformedServerFinal),
        ("V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", .malformedServerFinal),
        ("x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", .malformedServerFinal),
        (",v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", .malformedServerFinal),
        ("e=", .serverError("no reason given")),
        ("e=invalid-proof\nFAKE LOG LINE\u{1b}[31m", .serverError("invalid-proof?FAKE LOG LINE?[31m")),
    ])
    func hostileServerFinalIsAnError(_ message: String, _ error: ScramError) throws {
        var client = try Self.rfcClientAwaitingFinal()
        #expect(throws: error, "\(message.debugDescription)") { try client.verifyServerFinal(bytes(message)) }
        #expect(!client.isAuthenticated)
    }

    @Test func everyMessageIsOneLine() {
        let errors: [ScramError] = [.outOfTurn, .malformedServerFirst, .unsupportedExtension, .nonceMismatch,
                                    .invalidSalt, .iterationCount("0"), .malformedServerFinal,
                                    .serverError(ScramError.shown(bytes("a\r\nb"))), .signatureMismatch]
        for error in errors {
            #expect(!error.description.isEmpty && !error.description.contains { $0.isNewline }, "\(error)")
        }
    }
}
