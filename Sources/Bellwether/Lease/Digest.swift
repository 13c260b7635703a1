import CBellwether

/// The hashes PostgreSQL login needs — SHA-256, HMAC-SHA-256, PBKDF2 and
/// MD5 — over CBellwether's own C implementations (crypto.c), so that
/// bellwether links no crypto library. Bytes in, bytes out: what is hashed
/// is what goes on the wire, never a String's idea of it.
enum Digest {
    static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        data.withUnsafeBytes { input in bw_sha256(input.baseAddress, input.count, &out) }
        return out
    }

    static func md5(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        data.withUnsafeBytes { input in bw_md5(input.baseAddress, input.count, &out) }
        return out
    }

    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        key.withUnsafeBytes { key in
            message.withUnsafeBytes { message in
                bw_hmac_sha256(key.baseAddress, key.count, message.baseAddress, message.count, &out)
            }
        }
        return out
    }

    /// PBKDF2-HMAC-SHA-256. Callers bound `iterations` (it comes from the
    /// server in SCRAM); asking for none, or for no bytes, is a programming error.
    static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8] {
        precondition(iterations >= 1 && iterations <= Int(UInt32.max), "PBKDF2 needs 1...2^32-1 iterations, got \(iterations)")
        precondition(length >= 1, "PBKDF2 needs to derive at least one byte")
        var out = [UInt8](repeating: 0, count: length)
        let status = password.withUnsafeBytes { password in
            salt.withUnsafeBytes { salt in
                out.withUnsafeMutableBufferPointer { out in
                    bw_pbkdf2_sha256(password.baseAddress, password.count, salt.baseAddress, salt.count,
                                     UInt32(iterations), out.baseAddress, out.count)
                }
            }
        }
        precondition(status == 0, "bw_pbkdf2_sha256 refused arguments checked above")
        return out
    }

    /// Lowercase hexadecimal, as PostgreSQL's md5 method spells digests.
    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Compares without stopping at the first difference, so that how long a
    /// comparison takes says nothing about where a forged signature went wrong.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
