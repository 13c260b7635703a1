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
