@testable import Bellwether

/// The server's half of SCRAM-SHA-256 as PostgreSQL runs it from a stored
/// verifier, `SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY`: it checks
/// a client's proof knowing only StoredKey, and signs with ServerKey. Here
/// so that tests can hold the client to what a real server would accept.
struct ScramVerifierServer {
    var iterations: Int
    var salt: [UInt8]
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Parses PostgreSQL's pg_authid.rolpassword text; nil if it is not one.
    init?(verifier: String) {
        let fields = verifier.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count == 3, fields[0] == "SCRAM-SHA-256" else { return nil }
        let costAndSalt = fields[1].split(separator: ":")
        let keys = fields[2].split(separator: ":")
        guard costAndSalt.count == 2, keys.count == 2, let iterations = Int(costAndSalt[0]),
              let salt = Base64.decode(String(costAndSalt[1])),
              let storedKey = Base64.decode(String(keys[0])), let serverKey = Base64.decode(String(keys[1]))
        else { return nil }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }

    func serverFirst(clientNonce: String, serverNonce: String) -> [UInt8] {
        Array("r=\(clientNonce)\(serverNonce),s=\(Base64.encode(salt)),i=\(iterations)".utf8)
    }

    /// The server-final-message, or nil when the proof does not show the password.
    func serverFinal(clientFirst: [UInt8], serverFirst: [UInt8], clientFinal: [UInt8]) -> [UInt8]? {
        guard let (authMessage, proof) = Self.split(clientFirst: clientFirst, serverFirst: serverFirst, clientFinal: clientFinal)
        else { return nil }
        let clientSignature = Digest.hmacSHA256(key: storedKey, message: authMessage)
        let clientKey = zip(proof, clientSignature).map { $0 ^ $1 }
        guard Digest.sha256(clientKey) == storedKey else { return nil }
        return signed(authMessage)
    }

    /// `v=` and ServerKey's signature of `authMessage`.
    func signed(_ authMessage: [UInt8]) -> [UInt8] {
        Array("v=\(Base64.encode(Digest.hmacSHA256(key: serverKey, message: authMessage)))".utf8)
    }

    /// The AuthMessage both sides sign (RFC 5802 §3) and the client's proof.
    static func split(clientFirst: [UInt8], serverFirst: [UInt8], clientFinal: [UInt8]) -> ([UInt8], [UInt8])? {
        let marker = Array(",p=".utf8)
        guard clientFirst.starts(with: Array("n,,".utf8)), clientFinal.count >= marker.count,
              let at = (0...clientFinal.count - marker.count).last(where: { clientFinal[$0...].starts(with: marker) }),
              let proof = Base64.decode(clientFinal[(at + marker.count)...]), proof.count == 32 else { return nil }
        let comma = [UInt8(ascii: ",")]
        return (Array(clientFirst.dropFirst(3)) + comma + serverFirst + comma + Array(clientFinal[..<at]), proof)
    }
}
