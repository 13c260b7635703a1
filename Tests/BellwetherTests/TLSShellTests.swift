#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import Bellwether

/// `rediss://` in the shell, against the recording fake: what a master says
/// when libssl is missing, and how a TLS session tells the poll loop what to
/// wait for. The real handshake, against a real redis-server with real
/// certificates, is in the integration tests (RedisTLSTests).
@Suite struct TLSShellTests {
    @Test func aTLSLeaseWithoutLibsslIsOneLineAndExit69() throws {
        let fake = FakeSystem()
        fake.tlsMissing = "libssl.so.3: cannot open shared object file: No such file or directory"
        fake.after(.seconds(5)) { $0.deliver(.terminate) }
        do {
            let status = try MasterShellTests.run(["--lease", "rediss://redis.internal:6380", "--", "/bin/true"],
                                                  on: fake)
            Issue.record("the master ran, status \(status)")
        } catch let error as BellwetherError {
            #expect(error.exitCode.rawValue == 69)
            #expect(error.message.hasPrefix("--lease rediss://: TLS needs OpenSSL's libssl.so.3"), "\(error.message)")
            #expect(error.message.contains("cannot open shared object file"))
            #expect(!error.message.contains("\n"))
        }
        #expect(fake.spawns.isEmpty, "no worker before the lease can work")
    }

    @Test func plainRedisNeverAsksForLibssl() throws {
        let fake = FakeSystem()
        fake.tlsMissing = "libssl.so.3: cannot open shared object file: No such file or directory"
        MasterShellTests.readyWorkers(fake)
        fake.after(.seconds(2)) { $0.deliver(.terminate) }
        let status = try MasterShellTests.run(["-w", "1", "--ready", "notify", "--lease", "redis://127.0.0.1:6380",
                                               "--", "/bin/true"], on: fake)
        #expect(status == 0)
        #expect(fake.tlsOpened.isEmpty)
    }

    @Test func aSessionPollsForWhatItsLastStepWaitsOn() throws {
        let fake = FakeSystem()
        fake.handshakeSteps = [.wantRead, .wantWrite, .wantRead]
        try Sys.$calls.withValue(fake) {
            let session = try TLSSession(fd: 7, host: "redis.internal",
                                         settings: TLSSettings(verification: .full, caFile: "/etc/ca.pem"))
            #expect(session.waitsFor == Int16(POLLOUT), "the ClientHello goes first")
            #expect(session.handshake() == .waiting && session.waitsFor == Int16(POLLIN))
            #expect(session.handshake() == .waiting && session.waitsFor == Int16(POLLOUT))
            #expect(session.handshake() == .waiting && session.waitsFor == Int16(POLLIN))
            #expect(session.handshake() == .established && session.isEstablished && session.waitsFor == nil)
            var buffer = [UInt8](repeating: 0, count: 16)
            #expect(buffer.withUnsafeMutableBytes { session.read(into: $0) } == .wouldBlock)
            #expect(session.waitsFor == Int16(POLLIN))
            #expect([UInt8]("PING".utf8).withUnsafeBytes { session.write($0) } == .bytes(4))
            #expect(session.waitsFor == nil)
            session.close()
            session.close()
        }
        #expect(fake.tlsOpened.map(\.host) == ["redis.internal"])
        #expect(fake.tlsOpened.first?.settings.caFile == "/etc/ca.pem")
        #expect(fake.tlsClosed.count == 1, "closed once, however often close is called")
    }

    @Test func aCertificateThatFailsVerificationIsUntrustedNotAFailure() throws {
        let fake = FakeSystem()
        fake.handshakeSteps = [.wantRead, .untrusted("certificate verify failed: certificate has expired")]
        try Sys.$calls.withValue(fake) {
            let session = try TLSSession(fd: 7, host: "h", settings: TLSSettings())
            #expect(session.handshake() == .waiting)
            #expect(session.handshake() == .untrusted("certificate verify failed: certificate has expired"))
            #expect(!session.isEstablished)
        }
        #expect(fake.tlsClosed.count == 1, "freed when the session goes")
    }
}
