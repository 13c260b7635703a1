/// PostgreSQL's `md5` password method: the server stores
/// `"md5" + hex(md5(password + user))` and sends four random salt bytes;
/// the client answers with `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
/// MD5 is broken and PostgreSQL deprecates the method; a lease client
/// offers it only because an older server may still ask for it, and should
/// prefer SCRAM whenever the server does.
public enum PostgresMD5 {
    /// The PasswordMessage text for AuthenticationMD5Password's `salt`
    /// (4 bytes on the wire), without the terminating NUL.
    public static func response(user: String, password: [UInt8], salt: [UInt8]) -> [UInt8] {
        let stored = Digest.hex(Digest.md5(password + Array(user.utf8)))
        return Array("md5\(Digest.hex(Digest.md5(Array(stored.utf8) + salt)))".utf8)
    }
}
