/// A SCRAM-SHA-256 client (RFC 5802, RFC 7677) as PostgreSQL speaks it in
/// its SASL exchange. A pure value: the lease client moves the messages, and
/// supplies the randomness as the client nonce.
///
/// PostgreSQL takes the user from the startup packet and ignores the SCRAM
/// one, so its clients send an empty `n=`; `username` is a parameter only so
/// that RFC 7677's example can be replayed. Channel binding is not offered
/// (gs2 header `n,,`), which PostgreSQL accepts unless the server is set up
/// to require it.
///
/// Phases run in one direction: awaiting the server-first-message, awaiting
/// the server-final-message, authenticated. Any error — a malformed or
/// hostile message, a refusal, a message out of turn — ends in `failed`,
/// from which every later message is refused.
public struct ScramClient: Sendable {
    /// The mechanism name for PostgreSQL's SASLInitialResponse.
    public static let mechanism = "SCRAM-SHA-256"

    /// The highest iteration count accepted from a server. PostgreSQL's
    /// default is 4096; each iteration costs two SHA-256 compressions on the
    /// caller's thread, so a server asking for billions would stall it.
    public static let maximumIterations = 100_000

    enum Phase: Sendable {
        case awaitingServerFirst
        /// Holds the ServerSignature the server-final-message must carry.
        case awaitingServerFinal(serverSignature: [UInt8])
        case authenticated
        case failed
    }

    /// The SASLInitialResponse's data: `n,,n=USER,r=NONCE`.
    public let clientFirstMessage: [UInt8]
    private let clientFirstBare: [UInt8]
    private let clientNonce: [UInt8]
    private let password: [UInt8]
    private(set) var phase: Phase = .awaitingServerFirst

    /// `password` is the bytes the user gave, prepared here (see `SASLprep`).
    /// `clientNonce` must be printable ASCII without commas; `nonce(from:)`
    /// makes one from random bytes.
    public init(username: String = "", password: [UInt8], clientNonce: String) {
        let nonce = Array(clientNonce.utf8)
        precondition(!nonce.isEmpty && nonce.allSatisfy(Self.isNonceCharacter),
                     "a SCRAM client nonce is printable ASCII without commas")
        self.clientNonce = nonce
        self.password = SASLprep.prepare(password)
        clientFirstBare = Array("n=\(Self.escaped(username)),r=".utf8) + nonce
        clientFirstMessage = Array("n,,".utf8) + clientFirstBare
    }

    /// A client nonce from (at least one) random bytes; PostgreSQL's clients use 18.
    public static func nonce(from randomBytes: [UInt8]) -> String { Base64.encode(randomBytes) }

    /// True once the server has proved that it knows the password. A server
    /// that says AuthenticationOk before then has not, and must be refused.
    public var isAuthenticated: Bool {
        if case .authenticated = phase { true } else { false }
    }

    /// Takes the server-first-message (AuthenticationSASLContinue's data) and
    /// returns the client-final-message with the proof (for SASLResponse).
    public mutating func clientFinalMessage(serverFirst: [UInt8]) throws(ScramError) -> [UInt8] {
        guard case .awaitingServerFirst = phase else { throw .outOfTurn }
        phase = .failed  // until every check below has passed
        let challenge = try ServerFirst.parse(serverFirst, clientNonce: clientNonce)
        let keys = ScramKeys(password: password, salt: challenge.salt, iterations: challenge.iterations)
        let withoutProof = Array("c=biws,r=".utf8) + challenge.nonce  // biws: base64 of the gs2 header "n,,"
        let authMessage = clientFirstBare + [UInt8(ascii: ",")] + serverFirst + [UInt8(ascii: ",")] + withoutProof
        let clientSignature = Digest.hmacSHA256(key: keys.storedKey, message: authMessage)
        let proof = zip(keys.clientKey, clientSignature).map { $0 ^ $1 }
        phase = .awaitingServerFinal(serverSignature: Digest.hmacSHA256(key: keys.serverKey, message: authMessage))
        return withoutProof + Array(",p=\(Base64.encode(proof))".utf8)
    }

    /// Takes the server-final-message (AuthenticationSASLFinal's data);
    /// returns only if its signature proves the server knows the password.
    public mutating func verifyServerFinal(_ message: [UInt8]) throws(ScramError) {
        guard case .awaitingServerFinal(let expected) = phase else { throw .outOfTurn }
        phase = .failed
        let attributes = try Attribute.split(message, or: .malformedServerFinal)
        switch attributes.first?.name {
        case UInt8(ascii: "e"):
            let reason = attributes[0].value
            throw .serverError(reason.isEmpty ? "no reason given" : ScramError.shown(reason))
        case UInt8(ascii: "v"):
            guard let signature = Base64.decode(attributes[0].value), signature.count == 32 else {
                throw .malformedServerFinal
            }
            guard Digest.constantTimeEqual(signature, expected) else { throw .signatureMismatch }
            phase = .authenticated
        default:
            throw .malformedServerFinal
        }
    }

    /// RFC 5802 §5.1: printable ASCII except ','.
    static func isNonceCharacter(_ byte: UInt8) -> Bool {
        byte >= 0x21 && byte <= 0x7e && byte != UInt8(ascii: ",")
    }

    /// RFC 5802 saslname: '=' and ',' written as =3D and =2C.
    static func escaped(_ username: String) -> String {
        var text = ""
        for character in username.unicodeScalars {
            switch character {
            case "=": text += "=3D"
            case ",": text += "=2C"
            default: text.unicodeScalars.append(character)
            }
        }
        return text
    }
}

/// What a password and a salt give after `iterations` rounds (RFC 5802 §3).
/// PostgreSQL stores StoredKey and ServerKey in its verifier
/// (`SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY`), never the password.
struct ScramKeys {
    var clientKey: [UInt8]
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    /// `password` already prepared with SASLprep.
    init(password: [UInt8], salt: [UInt8], iterations: Int) {
        let salted = Digest.pbkdf2SHA256(password: password, salt: salt, iterations: iterations, length: 32)
        clientKey = Digest.hmacSHA256(key: salted, message: Array("Client Key".utf8))
        storedKey = Digest.sha256(clientKey)
        serverKey = Digest.hmacSHA256(key: salted, message: Array("Server Key".utf8))
    }
}
