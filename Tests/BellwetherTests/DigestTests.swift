import Testing
@testable import Bellwether

/// Bytes from hexadecimal written in a test (whitespace ignored); traps on a typo.
func unhex(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") })
    precondition(digits.count % 2 == 0, "odd hex literal")
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16)! }
}

/// The C hash functions behind PostgreSQL login, against their standards'
/// own test vectors and against Python's hashlib for the padding edges.
@Suite("Digests")
struct DigestTests {
    @Test(arguments: [
        // FIPS 180-4 examples (also RFC 6234 TEST1, TEST2_1), and the empty message.
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ])
    func sha256Vectors(_ message: String, _ digest: String) {
        #expect(Digest.hex(Digest.sha256(Array(message.utf8))) == digest)
    }

    @Test func sha256OfOneMillionAs() {
        #expect(Digest.hex(Digest.sha256([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths where the padding fits the last block (55), just does not (56),
    /// and around a whole block. Expected values: Python's
    /// hashlib.sha256((b"0123456789" * 10)[:n]).hexdigest().
    @Test(arguments: [
        (55, "f34d5a0f80c0cbf84c8c0b90218c22637abd199965249da736a20143c8c9c9d9"),
        (56, "83aa034bda83e458a0dc9cbce0d4e354716aa0ff770ed37ac0ed2b292052e4af"),
        (63, "074f6e9ac301d5d1b6df6f1dfb8c6f89c187ea945d352ce6a29279a9c630680b"),
        (64, "9674d9e078535b7cec43284387a6ee39956188e735a85452b0050b55341cda56"),
        (65, "52774b57c10e45040a61c14d35c1c8ebefe880082313aa0a21ebb077734cd067"),
    ])
    func sha256AtBlockBoundaries(_ length: Int, _ digest: String) {
        let message = Array(String(repeating: "0123456789", count: 10).utf8.prefix(length))
        #expect(Digest.hex(Digest.sha256(message)) == digest)
    }

    /// RFC 4231 §4.2–4.8. Case 5 checks only the first 128 bits, as the RFC does.
    @Test(arguments: [
        (String(repeating: "0b", count: 20), Array("Hi There".utf8),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        ("4a656665", Array("what do ya want for nothing?".utf8),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (String(repeating: "aa", count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ("0102030405060708090a0b0c0d0e0f10111213141516171819", [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (String(repeating: "0c", count: 20), Array("Test With Truncation".utf8),
         "a3b6167473100ee06e0c796c2955552b"),
        (String(repeating: "aa", count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (String(repeating: "aa", count: 131),
         Array(("This is a test using a larger than block-size key and a larger than block-size data. "
                + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ])
    func hmacSHA256RFC4231(_ key: String, _ message: [UInt8], _ mac: String) {
        let computed = Digest.hmacSHA256(key: unhex(key), message: message)
        #expect(Digest.hex(Array(computed.prefix(mac.count / 2))) == mac)
    }

    /// RFC 7914 §11, then Python's hashlib.pbkdf2_hmac("sha256", ...): a
    /// derived key shorter than, and longer than, one block; NULs inside.
    @Test(arguments: [
        ("passwd", "salt", 1, 64,
         "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"),
        ("Password", "NaCl", 80_000, 64,
         "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"),
        ("password", "salt", 4096, 32, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        ("passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 40,
         "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9"),
        ("pass\0word", "sa\0lt", 4096, 16, "89b69d0516f829893c696226650a8687"),
    ])
    func pbkdf2SHA256(_ password: String, _ salt: String, _ iterations: Int, _ length: Int, _ key: String) {
        let derived = Digest.pbkdf2SHA256(password: Array(password.utf8), salt: Array(salt.utf8),
                                          iterations: iterations, length: length)
        #expect(Digest.hex(derived) == key)
    }

    /// RFC 1321 appendix A.5.
    @Test(arguments: [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
        (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
    ])
    func md5RFC1321(_ message: String, _ digest: String) {
        #expect(Digest.hex(Digest.md5(Array(message.utf8))) == digest)
    }

    /// RFC 4648 §10, both ways.
    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                      ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")])
    func base64RFC4648(_ plain: String, _ encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(encoded) == Array(plain.utf8))
    }

    @Test func base64RoundTripsEveryByte() {
        for length in 0..<70 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }

    /// What a server could send in place of a salt or a signature.
    @Test(arguments: ["Zg", "Zg=", "Z===", "====", "Zg==Zg==", "Zh==", "Zm9=", "Zm 9v", "Zm9v\n", "Zm-v", "Zm_v", "Zm9v=", "é"])
    func base64RefusesWhatIsNotCanonical(_ text: String) {
        #expect(Base64.decode(text) == nil)
    }
}
