import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A server's certificate and key, and the CA certificate it chains to.
struct ServerCertificate {
    var certificate: String
    var key: String
    var authority: String
}

/// Certificate authorities and the server certificates they sign, made with
/// the `openssl` command in a scratch directory: P-256 keys, valid for two
/// days, left in place (a master reads its CA file at every connection).
/// `scripts/test` installs openssl; with BELLWETHER_REQUIRE_REDIS=1 a
/// missing one fails (`opensslIsInstalledWhereRequired`) instead of skipping
/// the TLS lease tests.
final class TestCertificates {
    static let executable: String? = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { access($0, X_OK) == 0 }
    static var available: Bool { executable != nil }

    struct Authority {
        var certificate: String
        var key: String
    }

    let directory = Harness.scratch("certificates")

    private func openssl(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let result = Harness.run([Self.executable!] + arguments)
        #expect(result.status == 0, "openssl \(arguments.joined(separator: " ")): \(result.stderr)",
                sourceLocation: sourceLocation)
    }

    private static let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    /// A self-signed CA named `name`.
    func authority(_ name: String) -> Authority {
        let made = Authority(certificate: "\(directory)/\(name).pem", key: "\(directory)/\(name).key")
        openssl(["req", "-x509"] + Self.newKey + ["-keyout", made.key, "-out", made.certificate, "-days", "2",
                 "-subj", "/CN=bellwether test \(name)",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        return made
    }

    /// A server certificate signed by `authority` for `names`, the
    /// subjectAltName entries ("DNS:localhost", "IP:127.0.0.1").
    func server(_ name: String, signedBy authority: Authority, names: [String]) -> ServerCertificate {
        let made = ServerCertificate(certificate: "\(directory)/\(name).pem", key: "\(directory)/\(name).key",
                                     authority: authority.certificate)
        let request = "\(directory)/\(name).csr", extensions = "\(directory)/\(name).ext"
        openssl(["req", "-new"] + Self.newKey + ["-keyout", made.key, "-out", request, "-subj", "/CN=\(name)"])
        let text = "subjectAltName=\(names.joined(separator: ","))\nbasicConstraints=CA:FALSE\n"
            + "extendedKeyUsage=serverAuth\n"
        #expect(FileManager.default.createFile(atPath: extensions, contents: Data(text.utf8)))
        openssl(["x509", "-req", "-in", request, "-CA", authority.certificate, "-CAkey", authority.key,
                 "-set_serial", String(UInt32.random(in: 1...UInt32.max)), "-days", "2", "-extfile", extensions,
                 "-out", made.certificate])
        return made
    }
}
