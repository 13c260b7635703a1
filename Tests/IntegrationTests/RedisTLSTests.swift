import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Test func opensslIsInstalledWhereRequired() {
    #expect(!RedisServer.required || TestCertificates.available,
            "BELLWETHER_REQUIRE_REDIS=1 but openssl is not installed (apt-get install openssl)")
}

/// TLS is loaded at run time: the master links no TLS library, so that
/// users without `rediss://` need none installed.
@Test func theMasterLinksNoTLSLibrary() {
    let linked = Harness.run(["/usr/bin/ldd", Harness.bellwether])
    #expect(linked.status == 0, "\(linked.stderr)")
    #expect(linked.stdout.contains("libc.so"), "\(linked.stdout)")
    #expect(!linked.stdout.contains("libssl") && !linked.stdout.contains("libcrypto"), "\(linked.stdout)")
}

/// `--lease rediss://` against a real redis-server on a TLS port, with
/// certificates made for each test by `TestCertificates`: a CA the lease is
/// told to trust, one it is not, a certificate for another name. The
/// timings are RedisLeaseTests'.
@Suite(.ownThread, .enabled(if: RedisServer.available && TestCertificates.available,
                            "needs redis-server and openssl (scripts/test installs them)"))
struct RedisTLSTests {
    /// A CA, a server certificate it signed for localhost and 127.0.0.1, and
    /// a second CA that signed nothing of the server's.
    static func certificates() -> (TestCertificates, ServerCertificate, wrong: TestCertificates.Authority) {
        let made = TestCertificates()
        let authority = made.authority("ca")
        let server = made.server("localhost", signedBy: authority, names: ["DNS:localhost", "IP:127.0.0.1"])
        return (made, server, made.authority("other-ca"))
    }

    /// A master of two workers on `lease`; `oracle`: shared with another's.
    static func start(_ lease: String, environment: [String: String] = [:], oracle: String? = nil,
                      name: String) -> Supervisor {
        let directory = Harness.scratch(name)
        return Supervisor(["-w", "2"] + RedisLeaseTests.timings + ["--control-socket", directory + "/control"],
                          worker: ["--tick-ms", "100"], environment: environment, directory: directory,
                          oracle: oracle, lease: lease, name: name)
    }

    /// A master's one line and status when it refuses to start on `lease`.
    static func refusal(_ lease: String) -> (status: Int32, lines: [Substring]) {
        let result = Harness.run([Harness.bellwether, "--lease", lease] + RedisLeaseTests.timings + ["--", "/bin/true"])
        return (result.status, result.stderr.split(separator: "\n"))
    }

    @Test func aTrustedCertificateGivesOneSchedulerAcrossSupervisors() throws {
        let (_, server, _) = Self.certificates()
        let redis = RedisServer(password: "tls-secret", tls: server)
        defer { withExtendedLifetime(redis) {} }
        let lease = "rediss://localhost:\(redis.port)?key=tls&cacert=\(server.authority)"
        let password = ["BELLWETHER_LEASE_PASSWORD": "tls-secret"]
        let first = Self.start(lease, environment: password, name: "tls-0")
        let all = [first, Self.start(lease, environment: password, oracle: first.oracle, name: "tls-1")]
        #expect(Harness.wait(15) { RedisLeaseTests.schedulers(all).count == 1 && all.allSatisfy { $0.live().count == 2 } },
                "\(all.map { $0.logText() })")
        let holder = try #require(RedisLeaseTests.holder(all))
        let scheduler = try #require(holder.liveSchedulers().first)
        #expect(scheduler.env["WORKER_FENCING_TOKEN"] != nil)
        // The key in Redis, written over TLS after AUTH, names the holder.
        let value = redis.command(["GET", "tls"]).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(value == "\(scheduler.env["WORKER_LEASE_HOLDER"] ?? "?")|\(scheduler.env["WORKER_FENCING_TOKEN"] ?? "?")")
        let lease0 = ControlTests.status(["-s", all[0].directory + "/control"])?["lease"] as? [String: Any]
        #expect(lease0?["kind"] as? String == "redis rediss://***@localhost:\(redis.port)/0?key=tls&cacert=\(server.authority)",
                "\(String(describing: lease0))")
        RedisLeaseTests.checkOneSchedulerStays(all, minimumStarts: 1)
    }

    @Test func aCertificateFromAnotherCAIsOneLineAndExit77() {
        let (_, server, wrong) = Self.certificates()
        let redis = RedisServer(tls: server)
        defer { withExtendedLifetime(redis) {} }
        for lease in ["rediss://localhost:\(redis.port)?cacert=\(wrong.certificate)",
                      "rediss://localhost:\(redis.port)"] {  // the system's CAs do not know the test's
            let (status, lines) = Self.refusal(lease)
            #expect(status == 77, "\(lease): \(lines)")
            #expect(lines.count == 1, "\(lines)")
            // Which words OpenSSL picks depends on whether the server sends its
            // CA along (redis-server does, from --tls-ca-cert-file).
            let prefix = "bellwether: --lease: TLS with redis at localhost:\(redis.port): certificate verify failed: "
            #expect(lines.first.map { [prefix + "self-signed certificate in certificate chain",
                                       prefix + "unable to get local issuer certificate"].contains(String($0)) } == true,
                    "\(lines)")
        }
    }

    @Test func aCertificateForAnotherNameIsRefused() {
        let made = TestCertificates()
        let authority = made.authority("ca")
        let server = made.server("other", signedBy: authority, names: ["DNS:other.example"])
        let redis = RedisServer(tls: server)
        defer { withExtendedLifetime(redis) {} }
        for host in ["127.0.0.1", "localhost"] {
            let (status, lines) = Self.refusal("rediss://\(host):\(redis.port)?cacert=\(authority.certificate)")
            #expect(status == 77, "\(lines)")
            #expect(lines.count == 1 && lines[0].contains("certificate verify failed: the certificate is not for \(host)"),
                    "\(lines)")
        }
    }

    /// insecure=1: encrypted, but no certificate checked: another CA's, for
    /// another name, is taken.
    @Test func insecureConnectsWhateverTheCertificate() {
        let made = TestCertificates()
        let server = made.server("other", signedBy: made.authority("unknown-ca"), names: ["DNS:other.example"])
        let redis = RedisServer(tls: server)
        defer { withExtendedLifetime(redis) {} }
        let alone = Self.start("rediss://127.0.0.1:\(redis.port)?key=insecure&insecure=1", name: "tls-insecure")
        #expect(Harness.wait(10) { alone.liveSchedulers().count == 1 }, "\(alone.logText())")
        #expect(!redis.command(["GET", "insecure"]).isEmpty)
        #expect(alone.stop() == 0)
    }

    /// A certificate that fails verification once the master runs (Redis
    /// was away at start) is not an exit but a retry, logged as an error that
    /// names the reason even though "cannot connect" began the failures.
    @Test func anUntrustedCertificateLaterIsLoggedAndRetried() {
        let (_, server, wrong) = Self.certificates()
        let reserved = ReservedPort()
        let port = reserved.port
        let alone = Self.start("rediss://localhost:\(port)?cacert=\(wrong.certificate)", name: "tls-later")
        #expect(Harness.wait(5) { alone.logText().contains("cannot connect to redis at localhost:\(port)") })
        let redis = RedisServer(port: reserved.released(), tls: server)
        defer { withExtendedLifetime(redis) {} }
        #expect(Harness.wait(5) {
            alone.logText().contains("error: lease: TLS with redis at localhost:\(port): certificate verify failed: ")
        }, "\(alone.logText())")
        #expect(alone.isRunning() && alone.liveSchedulers().isEmpty)
        #expect(alone.stop() == 0)
    }
}
