import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--lease postgres://…?sslmode=…` against a real PostgreSQL with `ssl =
/// on`, certificates made for each test by `TestCertificates`: TLS after the
/// SSLRequest, the chain checked against `sslrootcert`, the host name with
/// `verify-full`, and a server without TLS refused when TLS is required.
@Suite(.ownThread, .enabled(if: PostgresServer.available && TestCertificates.available,
                            "needs postgresql and openssl (scripts/test installs them)"))
struct PostgresTLSTests {
    typealias Lease = RedisLeaseTests

    /// How each master connected: "t" for TLS, "f" without, from pg_stat_ssl.
    static func encrypted(_ server: PostgresServer) -> [String] {
        server.psql("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                    + "WHERE a.application_name = 'bellwether'").stdout.split(separator: "\n").map(String.init)
    }

    @Test func verifyFullWithTheRightCAGivesOneSchedulerOverTLS() throws {
        let made = TestCertificates()
        let authority = made.authority("ca")
        let server = PostgresServer(tls: made.server("localhost", signedBy: authority, names: ["DNS:localhost", "IP:127.0.0.1"]))
        defer { withExtendedLifetime(server) {} }
        let url = server.url(query: "key=tls&sslmode=verify-full&sslrootcert=\(authority.certificate)")
        let all = Lease.cluster(lease: url, count: 2, name: "pgtls")
        #expect(Harness.wait(20) { Lease.schedulers(all).count == 1 && all.allSatisfy { $0.live().count == 2 } },
                "\(all.map { $0.logText().suffix(600) })")
        #expect(Harness.wait(5) { Self.encrypted(server).count == 2 }, "\(Self.encrypted(server))")
        #expect(Self.encrypted(server).allSatisfy { $0 == "t" }, "every lease connection is TLS")
        Lease.checkOneSchedulerStays(all, minimumStarts: 1)
    }

    @Test func aWrongCAAWrongHostNameAndAServerWithoutTLSAreOneLineAnd77() throws {
        let made = TestCertificates()
        let authority = made.authority("ca"), other = made.authority("other-ca")
        let server = PostgresServer(tls: made.server("elsewhere", signedBy: authority, names: ["DNS:other.example"]))
        let plain = PostgresServer()
        defer { withExtendedLifetime((server, plain)) {} }
        let cases: [(url: String, says: String)] = [
            (server.url(query: "sslmode=verify-ca&sslrootcert=\(other.certificate)"), "certificate verify failed"),
            (server.url(query: "sslmode=verify-full&sslrootcert=\(authority.certificate)"), "certificate verify failed"),
            (plain.url(query: "sslmode=require"), "does not offer TLS, and sslmode=require requires it"),
        ]
        for (url, says) in cases {
            let result = Harness.run([Harness.bellwether, "--lease", url, "--", "/bin/true"], timeout: 20)
            let lines = result.stderr.split(separator: "\n")
            #expect(result.status == 77 && lines.count == 1 && lines[0].contains(says), "\(url): \(result.stderr)")
        }
        // verify-ca checks the chain, not the name: the same certificate passes.
        let chainOnly = Supervisor(["-w", "1"] + Lease.timings,
                                   lease: server.url(query: "sslmode=verify-ca&sslrootcert=\(authority.certificate)"),
                                   name: "pgtls-ca")
        #expect(Harness.wait(10) { chainOnly.liveSchedulers().count == 1 }, "\(chainOnly.logText())")
        #expect(Self.encrypted(server) == ["t"])
        #expect(chainOnly.stop() == 0)
    }
}
