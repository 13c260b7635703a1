/// Why a SCRAM exchange failed, in words for one line of a log. Every way a
/// server's message can be wrong is one of these; none of them traps.
public enum ScramError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A message arrived in a phase that expects none (a second
    /// SASLContinue, anything after a failure).
    case outOfTurn
    case malformedServerFirst
    /// The server-first-message starts with `m=`, a mandatory extension.
    case unsupportedExtension
    /// The server's nonce does not start with ours or adds nothing to it.
    case nonceMismatch
    case invalidSalt
    /// The count as the server wrote it (shortened): 0, or above `maximumIterations`.
    case iterationCount(String)
    case malformedServerFinal
    /// The server's `e=` value, e.g. "invalid-proof" (made printable and shortened).
    case serverError(String)
    /// The server does not know the password, or is not the server we asked.
    case signatureMismatch

    public var description: String {
        switch self {
        case .outOfTurn: "server sent a SCRAM message out of turn"
        case .malformedServerFirst: "malformed SCRAM server-first-message"
        case .unsupportedExtension: "server requires a SCRAM extension this client does not know"
        case .nonceMismatch: "server's SCRAM nonce does not extend ours"
        case .invalidSalt: "server's SCRAM salt is empty or not base64"
        case .iterationCount(let count):
            "server's SCRAM iteration count \(count) is outside 1...\(ScramClient.maximumIterations)"
        case .malformedServerFinal: "malformed SCRAM server-final-message"
        case .serverError(let reason): "server refused SCRAM authentication: \(reason)"
        case .signatureMismatch: "server's SCRAM signature does not match"
        }
    }

    /// Server-chosen text made safe for one line: printable ASCII, at most 64 characters.
    static func shown(_ bytes: some Collection<UInt8>) -> String {
        let printable = bytes.prefix(64).map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "?") }
        return String(decoding: printable, as: UTF8.self) + (bytes.count > 64 ? "..." : "")
    }
}

/// One `x=value` of a SCRAM message (RFC 5802 §5.1: attr-val).
struct Attribute {
    var name: UInt8
    var value: ArraySlice<UInt8>

    /// Splits a message at its commas; `failure` unless every part is a
    /// letter, '=' and a value.
    static func split(_ message: [UInt8], or failure: ScramError) throws(ScramError) -> [Attribute] {
        var attributes: [Attribute] = []
        for part in message.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard part.count >= 2, let name = part.first, isLetter(name),
                  part[part.startIndex + 1] == UInt8(ascii: "=") else { throw failure }
            attributes.append(Attribute(name: name, value: part.dropFirst(2)))
        }
        return attributes
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }
}

/// The server-first-message: `r=NONCE,s=SALT,i=ITERATIONS[,extensions]`.
struct ServerFirst {
    var nonce: [UInt8]
    var salt: [UInt8]
    var iterations: Int

    static func parse(_ message: [UInt8], clientNonce: [UInt8]) throws(ScramError) -> ServerFirst {
        let attributes = try Attribute.split(message, or: .malformedServerFirst)
        if attributes.first?.name == UInt8(ascii: "m") { throw .unsupportedExtension }
        guard attributes.count >= 3, attributes[0].name == UInt8(ascii: "r"),
              attributes[1].name == UInt8(ascii: "s"), attributes[2].name == UInt8(ascii: "i") else {
            throw .malformedServerFirst
        }
        let nonce = Array(attributes[0].value)
        guard !nonce.isEmpty, nonce.allSatisfy(ScramClient.isNonceCharacter) else { throw .malformedServerFirst }
        // Our nonce first, then the server's own part: without the latter,
        // a recorded exchange could be replayed to us.
        guard nonce.count > clientNonce.count, nonce.starts(with: clientNonce) else { throw .nonceMismatch }
        guard let salt = Base64.decode(attributes[1].value), !salt.isEmpty else { throw .invalidSalt }
        return ServerFirst(nonce: nonce, salt: salt, iterations: try iterations(attributes[2].value))
    }

    private static func iterations(_ digits: ArraySlice<UInt8>) throws(ScramError) -> Int {
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw .malformedServerFirst
        }
        var count = 0
        for digit in digits {
            count = count * 10 + Int(digit - UInt8(ascii: "0"))
            // Checked at each digit, so that no count of digits can overflow.
            if count > ScramClient.maximumIterations { throw .iterationCount(ScramError.shown(digits)) }
        }
        guard count >= 1 else { throw .iterationCount(ScramError.shown(digits)) }
        return count
    }
}
