#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import Bellwether

/// `--watch` in the shell, against the fake's inotify: the debounce in
/// simulated time, and the watch limit.
@Suite struct WatcherShellTests {
    static let app = ["/app": ["views.py", "templates", "__pycache__"], "/app/templates": ["macros.py"],
                      "/app/__pycache__": ["views.cpython-311.pyc"]]

    /// `MasterShellTests.run`, with the configuration resolved against the fake too (--watch stats its paths).
    static func run(_ arguments: [String], on fake: FakeSystem) throws -> Int32 {
        try Sys.$calls.withValue(fake) { try MasterShellTests.run(arguments, on: fake) }
    }

    @Test func aBurstOfChangesIsOneReloadAfterTheLastAndExcludedNamesNone() throws {
        let fake = FakeSystem()
        MasterShellTests.readyWorkers(fake)
        fake.directories = Self.app
        for delay in [1000, 1100, 1250] {
            fake.after(.milliseconds(Int64(delay))) { $0.change(in: "/app", "views.py") }
        }
        fake.after(.seconds(3)) { $0.change(in: "/app", ".views.py.swp"); $0.change(in: "/app/templates", "macros.py~") }
        fake.after(.seconds(5)) { $0.deliver(.terminate) }
        let status = try Self.run(["-w", "1", "--no-scheduler", "--ready", "notify", "--watch", "/app", "--",
                                   "/bin/true"], on: fake)
        #expect(status == 0)
        #expect(!fake.blockedForever && !fake.spinning)
        // __pycache__ is not entered: two directories watched.
        #expect(fake.watches == ["/app", "/app/templates"])
        #expect(fake.lines("reload started").count == 1, "\(fake.log)")
        #expect(fake.lines("changed: /app/views.py; reloading").count == 1, "\(fake.log)")
        // 200 ms after the last of the three changes, not before.
        let reloads = fake.spawns.map(\.at).dropFirst()
        #expect(reloads.count == 1)
        if let first = fake.spawns.first?.at, let reload = reloads.first {
            #expect(reload - first >= .milliseconds(1450) && reload - first < .milliseconds(1500))
        }
    }

    @Test func pastTheWatchLimitOneWarningAndTheRestUnwatched() throws {
        let fake = FakeSystem()
        MasterShellTests.readyWorkers(fake)
        fake.directories = ["/app": ["a", "b", "c"], "/app/a": ["x"], "/app/b": [], "/app/c": []]
        fake.watchLimit = 2
        fake.after(.seconds(1)) { $0.deliver(.terminate) }
        let status = try Self.run(["-w", "1", "--ready", "notify", "--watch", "/app", "--", "/bin/true"],
                                              on: fake)
        #expect(status == 0)
        #expect(fake.watches.count == 2)
        #expect(fake.lines("fs.inotify.max_user_watches").count == 1, "\(fake.log)")
        #expect(fake.lines("(2 directories)").count == 1, "\(fake.log)")
    }
}
