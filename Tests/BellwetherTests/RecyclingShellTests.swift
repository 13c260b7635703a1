#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Bellwether

/// The shell's half of `--max-worker-memory` and `X_BELLWETHER_RECYCLE=1`,
/// against the recording fake: which /proc files it reads, when it wakes to
/// read them, and what it tells the core.
@Suite struct RecyclingShellTests {
    /// A worker tree in the fake's /proc: `pid` with one child `pid + 500`,
    /// each using `kilobytes` of PSS.
    static func tree(_ fake: FakeSystem, _ pid: Int32, kilobytes: Int) {
        let child = pid + 500
        fake.directories["/proc/\(pid)/task"] = [String(pid)]
        fake.files["/proc/\(pid)/task/\(pid)/children"] = Array("\(child) ".utf8)
        fake.directories["/proc/\(child)/task"] = [String(child)]
        for process in [pid, child] {
            fake.files["/proc/\(process)/smaps_rollup"] = Array("Rss: 1 kB\nPss:  \(kilobytes) kB\n".utf8)
        }
    }

    @Test func withoutAMemoryLimitTheIdleMasterNeverWakes() throws {
        let fake = FakeSystem()
        MasterShellTests.readyWorkers(fake)
        fake.onSpawn = { fake, pid, _ in
            Self.tree(fake, pid, kilobytes: 1 << 30)
            fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") }
        }
        fake.after(.seconds(600)) { $0.deliver(.terminate) }
        let status = try MasterShellTests.run(["--workers", "2", "--ready", "notify", "--", "/bin/true"], on: fake)
        #expect(status == 0)
        // Once the workers are up, the master sleeps with no deadline until TERM.
        let start = try #require(fake.spawns.first?.at)
        let late = fake.timeouts.filter { $0 > start + .seconds(10) }
        #expect(late.isEmpty, "woke at \(late.map { $0 - start })")
        #expect(fake.lines("recycling").isEmpty)
    }

    @Test func aTreeOverTheLimitIsMeasuredWithItsChildrenAndRecycledAfterItsReplacementIsReady() throws {
        let fake = FakeSystem()
        var first: Int32?
        fake.onSpawn = { fake, pid, _ in
            // The first worker's tree: 2 × 40 MiB, over 64 MiB only together.
            Self.tree(fake, pid, kilobytes: first == nil ? 40 << 10 : 8 << 10)
            if first == nil { first = pid }
            fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") }
        }
        fake.after(.seconds(30)) { $0.deliver(.terminate) }
        let status = try MasterShellTests.run(["--workers", "1", "--no-scheduler", "--ready", "notify",
                                               "--max-worker-memory", "64M", "--", "/bin/true"], on: fake)
        #expect(status == 0)
        #expect(!fake.blockedForever && !fake.spinning)
        let recycling = fake.lines("recycling worker 0")
        #expect(recycling.count == 1, "\(fake.log)")
        #expect(recycling.first?.contains("its processes use 80 MiB, over --max-worker-memory 64 MiB") == true)
        #expect(fake.spawns.count == 2, "one replacement, which stays under the limit")
        // The first measurement comes after one interval (5 s), not before.
        let replacedAt = try #require(fake.spawns.last?.at)
        let firstAt = try #require(fake.spawns.first?.at)
        #expect(replacedAt - firstAt >= .seconds(5) && replacedAt - firstAt < .seconds(6))
        // TERM to the old worker only once its replacement was ready.
        let term = fake.kills.first { $0.pid == first && $0.signal == SIGTERM }
        #expect(try #require(term).at >= replacedAt + .milliseconds(20))
    }

    @Test func anAppThatAsksIsReplaced() throws {
        let fake = FakeSystem()
        var asked = false
        fake.onSpawn = { fake, pid, _ in
            fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") }
            if !asked {
                asked = true
                fake.after(.seconds(2)) { $0.notify(from: pid, "X_BELLWETHER_RECYCLE=1") }
            }
        }
        fake.after(.seconds(5)) { $0.deliver(.terminate) }
        let status = try MasterShellTests.run(["--workers", "1", "--no-scheduler", "--ready", "notify", "--",
                                               "/bin/true"], on: fake)
        #expect(status == 0)
        #expect(fake.lines("recycling worker 0").first?.contains("the app asked (X_BELLWETHER_RECYCLE=1)") == true,
                "\(fake.log)")
        #expect(fake.spawns.count == 2)
    }
}
