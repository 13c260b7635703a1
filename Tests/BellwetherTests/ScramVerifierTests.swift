import Testing
@testable import Bellwether
import TestSupport

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// The client against what PostgreSQL stores: verifiers computed with
/// Python's hashlib (PBKDF2, then HMAC "Client Key"/"Server Key", then
/// SHA-256 of ClientKey), a server that checks proofs from them, password
/// preparation, and the older md5 method.
@Suite("SCRAM against PostgreSQL verifiers")
struct ScramVerifierTests {
    /// Python: salt = bytes.fromhex("5c3a9e0f4b7d21e8a6c4f0d9b2e1a377"), 4096
    /// iterations, password b"correct horse battery staple".
    static let verifier = "SCRAM-SHA-256$4096:XDqeD0t9IeimxPDZsuGjdw==$7YNC4PowNeiUhT5aVBNsrg4T0YGBf3x33zIE2RI9nGU="
        + ":sRc4oCjYJZFNyJd3u9oe2dygr2TbbIytABwKQMnjoDk="
    /// Python: the same for "pass\u00a0wörd\u00ad" after SASLprep ("pass wörd",
    /// by the stdlib's stringprep tables and NFKC), salt 00112233...eeff.
    static let preparedVerifier = "SCRAM-SHA-256$4096:ABEiM0RVZneImaq7zN3u/w==$Rkt+uqwvlA6K8sLXVhsgxcmtqEiUNfjxdlP5rbSUPAU="
        + ":6YqC6+ARe6+eWBfuqvVyNrTSm1xzOdwPJczzmH9Rq6E="

    @Test func keysMatchAStoredVerifier() throws {
        let server = try #require(ScramVerifierServer(verifier: Self.verifier))
        let keys = ScramKeys(password: bytes("correct horse battery staple"), salt: server.salt, iterations: server.iterations)
        #expect(keys.storedKey == server.storedKey)
        #expect(keys.serverKey == server.serverKey)
    }

    /// A whole login as PostgreSQL would run it: empty user name, the
    /// server's nonce appended to ours.
    @Test(arguments: [
        (verifier, "correct horse battery staple", true),
        (verifier, "correct horse battery stapler", false),
        (preparedVerifier, "pass\u{a0}wörd\u{ad}", true),
        (preparedVerifier, "pass wörd", true),
        (preparedVerifier, "passwörd", false),
    ])
    func loginAgainstAVerifier(_ verifier: String, _ password: String, _ accepted: Bool) throws {
        let server = try #require(ScramVerifierServer(verifier: verifier))
        var client = ScramClient(password: bytes(password), clientNonce: "K5dsXWnWa8cI2ioDXAHbMYQh")
        let serverFirst = server.serverFirst(clientNonce: "K5dsXWnWa8cI2ioDXAHbMYQh", serverNonce: "TVn1Tuw0tkuGj3k+kESwdtt3")
        let clientFinal = try client.clientFinalMessage(serverFirst: serverFirst)
        let serverFinal = server.serverFinal(clientFirst: client.clientFirstMessage, serverFirst: serverFirst, clientFinal: clientFinal)
        #expect((serverFinal != nil) == accepted)
        if let serverFinal {
            try client.verifyServerFinal(serverFinal)
            #expect(client.isAuthenticated)
        }
    }

    /// A server that answers from another password's verifier (an impostor)
    /// cannot produce a signature the client takes.
    @Test func impostorServerIsRefused() throws {
        let real = try #require(ScramVerifierServer(verifier: Self.verifier))
        let wrong = ScramKeys(password: bytes("hunter2"), salt: real.salt, iterations: real.iterations)
        let impostor = ScramVerifierServer(iterations: real.iterations, salt: real.salt,
                                           storedKey: wrong.storedKey, serverKey: wrong.serverKey)
        var client = ScramClient(password: bytes("correct horse battery staple"), clientNonce: "abc")
        let serverFirst = impostor.serverFirst(clientNonce: "abc", serverNonce: "def")
        let clientFinal = try client.clientFinalMessage(serverFirst: serverFirst)
        #expect(impostor.serverFinal(clientFirst: client.clientFirstMessage, serverFirst: serverFirst, clientFinal: clientFinal) == nil)
        // The impostor cannot check the proof, so it signs as if it had.
        let (authMessage, _) = try #require(ScramVerifierServer.split(clientFirst: client.clientFirstMessage,
                                                                      serverFirst: serverFirst, clientFinal: clientFinal))
        let forged = impostor.signed(authMessage)
        #expect(throws: ScramError.signatureMismatch) { try client.verifyServerFinal(forged) }
    }

    /// Mutations of a real exchange: each must be refused, or (only if
    /// unchanged) accepted — never a trap. i=1 keeps each round cheap, and
    /// substitutions and deletions cannot raise it above 9.
    @Test func mutatedExchangesNeverTrap() throws {
        let seed: UInt64 = 5802
        var random = SplitMix(seed: seed)
        let salt = bytes("salt")
        let keys = ScramKeys(password: bytes("pencil"), salt: salt, iterations: 1)
        let server = ScramVerifierServer(iterations: 1, salt: salt, storedKey: keys.storedKey, serverKey: keys.serverKey)
        let alphabet = bytes("rsiev=,0123456789+/%$AZaz\0\u{7f}") + [0xff, 0xc3]
        func mutated(_ message: [UInt8]) -> [UInt8] {
            var message = message
            for _ in 0..<(1 + random.below(3)) where !message.isEmpty {
                let at = random.below(message.count)
                if random.percent(50) { message[at] = random.pick(alphabet) } else { message.remove(at: at) }
            }
            return message
        }
        var authenticated = 0
        for round in 0..<2_000 {
            var client = ScramClient(password: bytes("pencil"), clientNonce: "nonce")
            let honest = server.serverFirst(clientNonce: "nonce", serverNonce: "+server")
            let serverFirst = round % 4 == 0 ? mutated(honest) : honest
            guard let clientFinal = try? client.clientFinalMessage(serverFirst: serverFirst) else { continue }
            guard let signed = server.serverFinal(clientFirst: client.clientFirstMessage,
                                                  serverFirst: serverFirst, clientFinal: clientFinal) else {
                // A tampered salt or count the client accepted spoils its proof; nothing else may.
                #expect(serverFirst != honest, "seed \(seed), round \(round)")
                continue
            }
            let serverFinal = round % 4 == 1 ? signed : mutated(signed)
            _ = try? client.verifyServerFinal(serverFinal)
            #expect(client.isAuthenticated == (serverFinal == signed), "seed \(seed), round \(round)")
            if client.isAuthenticated { authenticated += 1 }
        }
        #expect(authenticated >= 400, "seed \(seed): the honest rounds must succeed")
    }

    @Test func asciiPasswordsAreUsedUnchanged() {
        let ascii = bytes("tab\tand\u{7f} and spaces ")
        #expect(SASLprep.prepare(ascii) == ascii)
    }

    @Test(arguments: [
        ("pass\u{a0}word", "pass word"),
        ("pass\u{3000}wörd", "pass wörd"),
        ("pass\u{ad}wörd", "passwörd"),
        ("a\u{200b}b", "a b"),  // in both tables: PostgreSQL maps it to a space
        ("x\u{fe0f}\u{feff}y\u{2060}é", "xyé"),
        ("wörd", "wörd"),
    ])
    func nonASCIISpacesAndInvisiblesAreMapped(_ password: String, _ prepared: String) {
        #expect(SASLprep.prepare(bytes(password)) == bytes(prepared))
    }

    /// PostgreSQL falls back to the password as given when preparation fails.
    @Test func unpreparablePasswordsAreUsedRaw() {
        let notUTF8: [UInt8] = [0x70, 0xff, 0xfe, 0xa0]
        #expect(SASLprep.prepare(notUTF8) == notUTF8)
        let nothingLeft = bytes("\u{ad}\u{200c}")
        #expect(SASLprep.prepare(nothingLeft) == nothingLeft)
    }

    /// Python: "md5" + md5(md5(b"s3cret!" + b"bellwether").hexdigest().encode()
    /// + bytes([0x93, 0x1b, 0x00, 0xfe])).hexdigest()
    @Test func postgresMD5Response() {
        let response = PostgresMD5.response(user: "bellwether", password: bytes("s3cret!"), salt: [0x93, 0x1b, 0x00, 0xfe])
        #expect(String(decoding: response, as: UTF8.self) == "md5dfb3d81b3d2a210817bdaebc3340e6fc")
    }
}
