import Testing
@testable import Bellwether

/// Lease URLs, ahead of the Redis lease itself.
@Suite("Lease addresses")
struct LeaseAddressTests {
    let source = SettingSource.flag("--lease")

    func redis(_ text: String) throws -> RedisAddress {
        guard case .redis(let address) = try LeaseAddress.parse(text, source: source) else {
            Issue.record("not a redis lease: \(text)")
            return RedisAddress(host: "", port: 0, database: 0, key: "")
        }
        return address
    }

    @Test func fileLeases() throws {
        #expect(try LeaseAddress.parse("file:/run/app.lock", source: source) == .file(path: "/run/app.lock"))
    }

    @Test func redisURLs() throws {
        #expect(try redis("redis://127.0.0.1:6380") ==
                RedisAddress(host: "127.0.0.1", port: 6380, database: 0, key: RedisAddress.defaultKey))
        #expect(try redis("redis://cache.internal") ==
                RedisAddress(host: "cache.internal", port: 6379, database: 0, key: RedisAddress.defaultKey))
        let full = try redis("redis://app:s%40cret%3A1@[::1]:7000/3?key=jobs:scheduler")
        #expect(full == RedisAddress(user: "app", password: "s@cret:1", host: "::1", port: 7000, database: 3,
                                     key: "jobs:scheduler"))
        #expect(!full.description.contains("s@cret"), "logs never show the password")
        #expect(try redis("redis://:pw@h:1").password == "pw")
        #expect(try redis("redis://:pw@h:1").user == nil)
        #expect(try redis("redis://pw@h").password == "pw")
    }

    func postgres(_ text: String) throws -> PostgresAddress {
        guard case .postgres(let address) = try LeaseAddress.parse(text, source: source) else {
            Issue.record("not a postgres lease: \(text)")
            return PostgresAddress(host: "", port: 0)
        }
        return address
    }

    @Test func postgresURLsFollowLibpq() throws {
        let plain = try postgres("postgres://db.internal")
        #expect(plain.host == "db.internal" && plain.port == 5432 && plain.user == nil && plain.database == nil)
        #expect(plain.key == RedisAddress.defaultKey && plain.sslMode == .prefer)
        let full = try postgres("postgresql://app:s%40cret@[::1]:6432/jobs?key=k1&table=ops.lease&sslmode=disable"
                                + "&application_name=web&connect_timeout=7")
        #expect(full.user == "app" && full.password == "s@cret" && full.host == "::1" && full.port == 6432)
        #expect(full.database == "jobs" && full.key == "k1" && full.table == "ops.lease" && full.sslMode == .disable)
        #expect(full.applicationName == "web" && full.connectTimeout == 7)
        #expect(!full.description.contains("s@cret"), "logs never show the password")
        #expect(try postgres("postgres://u@h?password=pw").password == "pw")
        #expect(PostgresAddress.redacted("postgres://u:pw@h?password=pw2&key=k") == "postgres://u:***@h?password=***&key=k")
        #expect(PostgresAddress.redacted("postgres://h?password=a&password=b&key=x@y")
                == "postgres://h?password=***&password=***&key=x@y")
        #expect(plain.table == "public.bellwether_lease", "the same table whatever the search_path")
        #expect(PostgresLeaseSQL.bounded("SELECT 1", by: .milliseconds(400))
                == "SET LOCAL lock_timeout = 400; SET LOCAL statement_timeout = 400; SELECT 1")
        #expect(PostgresLeaseSQL.quoted("ops.lease") == "\"ops\".\"lease\"")
    }

    @Test(arguments: [
        "postgres://h:0", "postgres://h?sslmode=on", "postgres://h?table=1x", "postgres://h?table=a.b.c",
        "postgres://h?table=a;drop", "postgres://h?table=MyLease", "postgres://h?key=", "postgres://h?foo=1", "postgres://h?connect_timeout=x",
        "postgres://%zz@h", "postgres://h/%zz", "postgres://h o",
    ])
    func malformedPostgresLeasesAreErrors(_ text: String) {
        #expect(throws: BellwetherError.self) { try LeaseAddress.parse(text, source: source) }
    }

    /// rediss://: the same URL over TLS, verified against the system's CAs
    /// and the host name unless told otherwise.
    @Test func redissURLs() throws {
        let plain = try redis("rediss://cache.internal:6380/2?key=k")
        #expect(plain == RedisAddress(host: "cache.internal", port: 6380, database: 2, key: "k",
                                      tls: TLSSettings(verification: .full, caFile: nil)))
        #expect(plain.description == "rediss://cache.internal:6380/2?key=k")
        #expect(try redis("rediss://h").port == 6379)
        #expect(try redis("redis://h").tls == nil)

        let pinned = try redis("rediss://app:pw@[::1]:7000?cacert=/etc/redis/ca%20file.pem&key=jobs")
        #expect(pinned.tls == TLSSettings(verification: .full, caFile: "/etc/redis/ca file.pem"))
        #expect(pinned.key == "jobs" && pinned.host == "::1" && pinned.password == "pw")
        #expect(pinned.description == "rediss://app@[::1]:7000/0?key=jobs&cacert=/etc/redis/ca file.pem")

        let insecure = try redis("rediss://h?insecure=1")
        #expect(insecure.tls == TLSSettings(verification: .none))
        #expect(insecure.description.hasSuffix("&insecure=1"), "logs say the server is not verified")
        #expect(try redis("rediss://h?insecure=0").tls == TLSSettings(verification: .full))
        #expect(try redis("rediss://h?insecure=1&insecure=0&cacert=/ca.pem").tls?.caFile == "/ca.pem",
                "a later parameter replaces an earlier one")
    }

    @Test(arguments: [
        "redis://h?cacert=/ca.pem", "redis://h?insecure=1", "rediss://h?insecure=yes", "rediss://h?insecure=",
        "rediss://h?insecure", "rediss://h?cacert=", "rediss://h?cacert=ca.pem", "rediss://h?cacert=%00/x",
        "rediss://h?cacert=/ca%00.pem", "rediss://h?cacert=/x%zz", "rediss://h?insecure=1&cacert=/ca.pem",
        "rediss://h?verify=none", "rediss://", "rediss://h:0", "rediss://h o", "REDISS://h", "redisss://h",
        "rediss:/h", "rediss://h?sslmode=require",
    ])
    func malformedTLSLeasesAreErrors(_ text: String) {
        #expect(throws: BellwetherError.self, "\(text)") { _ = try LeaseAddress.parse(text, source: source) }
    }

    @Test func tlsErrorsNeverShowThePassword() {
        for text in ["rediss://app:topsecret@h?insecure=2", "rediss://:topsecret@h?cacert=rel",
                     "rediss://topsecret@h:0", "rediss://app:topsecret@h?cacert=/a@b&x=1"] {
            do {
                _ = try LeaseAddress.parse(text, source: source)
                Issue.record("accepted \(text)")
            } catch {
                #expect(!error.message.contains("topsecret"), "\(error.message)")
                #expect(error.exitCode == .usage)
            }
        }
    }

    @Test(arguments: [
        "zookeeper://x", "file:", "redis://", "redis://h:0", "redis://h:70000", "redis://h:abc", "redis://h/x",
        "redis://h?db=1", "redis://h?key=", "redis://[zz::1]:1", "redis://[::1", "redis://h%zz", "redis://a:b%@h",
        "redis://h o:1",
    ])
    func malformedLeasesAreErrors(_ text: String) {
        #expect(throws: BellwetherError.self, "\(text)") { _ = try LeaseAddress.parse(text, source: source) }
    }

    @Test func errorsNeverShowThePassword() {
        do {
            _ = try LeaseAddress.parse("redis://app:topsecret@h:99999", source: source)
            Issue.record("accepted")
        } catch {
            #expect(!error.message.contains("topsecret"), "\(error.message)")
        }
    }
}
