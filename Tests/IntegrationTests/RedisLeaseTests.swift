import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Test func redisIsInstalledWhereRequired() {
    #expect(!RedisServer.required || RedisServer.available,
            "BELLWETHER_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install redis-server)")
}

/// One scheduler across supervisors through a real Redis, with the short
/// timings L = 3 s, R = 0.4 s, D = 2 s, G = 0.5 s, H = 2.6 s. Every scheduler
/// takes the overlap oracle (a shared flock) and logs its fence. Each test
/// has a Redis server, supervisors, directories and oracle of its own, so
/// the tests run side by side: most of their time is the lease's timings.
@Suite(.ownThread, .enabled(if: RedisServer.available, "needs redis-server (scripts/test installs it)"))
struct RedisLeaseTests {
    static let (ttl, renew, deadline, grace, takeover) = (3.0, 0.4, 2.0, 0.5, 2.6)
    static let timings = ["--lease-ttl", "3", "--lease-renew-interval", "0.4", "--lease-renew-deadline", "2",
                          "--lease-grace", "0.5", "--lease-takeover-delay", "2.6"]

    /// Three supervisors of two workers each on one Redis, sharing one oracle.
    static func cluster(_ redis: RedisServer, count: Int = 3, key: String = "it") -> [Supervisor] {
        cluster(lease: redis.url + "?key=\(key)", count: count, name: "redis")
    }

    /// `count` supervisors of two workers each on the lease `lease` (any
    /// network lease's URL), sharing one oracle.
    static func cluster(lease: String, count: Int = 3, name: String) -> [Supervisor] {
        // Each with its control socket in its own directory, for `bellwether status`.
        func supervisor(_ index: Int, oracle: String?) -> Supervisor {
            let directory = Harness.scratch("\(name)-\(index)")
            return Supervisor(["-w", "2"] + timings + ["--control-socket", directory + "/control"],
                              worker: ["--tick-ms", "100"], directory: directory, oracle: oracle,
                              lease: lease, name: "\(name)-\(index)")
        }
        let first = supervisor(0, oracle: nil)
        return [first] + (1..<count).map { supervisor($0, oracle: first.oracle) }
    }

    /// A fresh Redis and a cluster on it, once it has settled: one scheduler,
    /// two live workers per supervisor.
    static func settledCluster() -> (RedisServer, [Supervisor]) {
        let redis = RedisServer()
        let all = cluster(redis)
        #expect(Harness.wait(15) { schedulers(all).count == 1 && all.allSatisfy { $0.live().count == 2 } })
        return (redis, all)
    }

    static func schedulers(_ cluster: [Supervisor]) -> [WorkerRecord] { cluster.flatMap { $0.liveSchedulers() } }

    static func holder(_ cluster: [Supervisor]) -> Supervisor? { cluster.first { !$0.liveSchedulers().isEmpty } }

    /// The master holding the lease, and its scheduler.
    static func holderAndScheduler(_ cluster: [Supervisor],
                                   sourceLocation: SourceLocation = #_sourceLocation) throws -> (Supervisor, WorkerRecord) {
        let master = try #require(holder(cluster), sourceLocation: sourceLocation)
        return (master, try #require(master.liveSchedulers().first, sourceLocation: sourceLocation))
    }

    static func checkOracle(_ cluster: [Supervisor], minimumStarts: Int = 1) {
        let log = OracleLog(cluster[0].oracle)
        #expect(cluster[0].overlaps().isEmpty, "overlap: \(cluster[0].overlaps())")
        #expect(log.fenceProblem == nil, "\(log.fenceProblem ?? "")")
        #expect(log.starts.count >= minimumStarts)
    }

    /// The end of a handover: `seconds` later there is still one scheduler
    /// among `remaining`, the oracle holds, and each of them stops with 0.
    static func checkOneSchedulerStays(_ cluster: [Supervisor], remaining: [Supervisor]? = nil, seconds: Double = 1,
                                       minimumStarts: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let remaining = remaining ?? cluster
        usleep(useconds_t(seconds * 1e6))
        #expect(schedulers(remaining).count == 1, sourceLocation: sourceLocation)
        checkOracle(cluster, minimumStarts: minimumStarts)
        for supervisor in remaining { #expect(supervisor.stop() == 0, sourceLocation: sourceLocation) }
    }

    @Test func threeSupervisorsKeepExactlyOneSchedulerFor20Seconds() {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        var counts: [Int] = []
        let end = Date().addingTimeInterval(20)
        while Date() < end {
            counts.append(Self.schedulers(all).count)
            usleep(200_000)
        }
        #expect(counts.allSatisfy { $0 == 1 }, "schedulers seen: \(Set(counts))")
        #expect(OracleLog(all[0].oracle).starts.count == 1, "one scheduler start in 20 s")
        Self.checkOracle(all)
        // bellwether status shows the lease: held by the scheduler's master only.
        let states = all.map { supervisor -> String in
            let lease = ControlTests.status(["-s", supervisor.directory + "/control"])?["lease"] as? [String: Any]
            #expect((lease?["kind"] as? String)?.hasPrefix("redis redis://127.0.0.1:") == true, "\(String(describing: lease))")
            return lease?["state"] as? String ?? "none"
        }
        #expect(states.filter { $0.hasPrefix("held by this master, fence ") }.count == 1, "\(states)")
        #expect(states.filter { $0.hasPrefix("seeking") }.count == 2, "\(states)")
        for supervisor in all { #expect(supervisor.stop() == 0) }
    }

    @Test func killingTheHoldersMasterHandsTheLeaseOn() throws {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        let (holder, old) = try Self.holderAndScheduler(all)
        holder.signal(SIGKILL)
        _ = holder.waitForExit()
        let killedAt = Date()
        #expect(Harness.wait(2) { !Harness.isAlive(old.pid) }, "the scheduler dies with its master")
        let others = all.filter { $0 !== holder }
        let bound = Self.ttl + Self.renew + Self.takeover + 2
        #expect(Harness.wait(bound) { Self.schedulers(others).count == 1 }, "\(others.map { $0.logText() })")
        let took = Date().timeIntervalSince(killedAt)
        #expect(took <= bound, "takeover in \(took) s, bound L + R + H + spawn")
        Self.checkOneSchedulerStays(all, remaining: others, minimumStarts: 2)
    }

    @Test func aStoppedMastersGuardStopsItsScheduler() throws {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        let (holder, old) = try Self.holderAndScheduler(all)
        holder.signal(SIGSTOP)
        let stoppedAt = Date()
        #expect(Harness.wait(Self.deadline + Self.grace + 1) { !Harness.isAlive(old.pid) },
                "the guard stops the scheduler by D + G")
        let stoppedIn = Date().timeIntervalSince(stoppedAt)
        // D + G, with a second for a loaded machine (the partition tests' slack).
        #expect(stoppedIn <= Self.deadline + Self.grace + 1, "guard took \(stoppedIn) s")
        let others = all.filter { $0 !== holder }
        #expect(Harness.wait(Self.ttl + Self.renew + Self.takeover + 2) { Self.schedulers(others).count == 1 })
        let frozenFor = 3 * Self.ttl - Date().timeIntervalSince(stoppedAt)
        if frozenFor > 0 { usleep(useconds_t(frozenFor * 1e6)) }
        holder.signal(SIGCONT)
        #expect(Harness.wait(3) { holder.logText().contains("stepping down") }, "\(holder.logText())")
        #expect(Harness.wait(5) { holder.live().count == 2 && holder.liveSchedulers().isEmpty },
                "the old holder runs all-worker")
        Self.checkOneSchedulerStays(all, minimumStarts: 2)
    }

    @Test func anOutageLongerThanDStepsDownAndOneSchedulerReturns() throws {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        let old = try #require(Self.schedulers(all).first)
        redis.stop()
        let outageAt = Date()
        #expect(Harness.wait(Self.deadline + Self.grace + 1) { !Harness.isAlive(old.pid) }, "the holder steps down")
        #expect(Date().timeIntervalSince(outageAt) <= Self.deadline + Self.grace + 0.5)
        usleep(useconds_t((Self.deadline + 1) * 1e6))
        #expect(Self.schedulers(all).isEmpty, "no scheduler while Redis is away")
        redis.start()
        #expect(Harness.wait(Self.renew + Self.takeover + 3) { Self.schedulers(all).count == 1 })
        Self.checkOneSchedulerStays(all, seconds: 2, minimumStarts: 2)
    }

    @Test func aRestartWithoutPersistenceAndFlushallKeepFencesRising() throws {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        // Restart: the store comes back empty, the fence counter at zero.
        redis.stop()
        redis.start()
        #expect(Harness.wait(Self.deadline + Self.takeover + 5) {
            OracleLog(all[0].oracle).starts.count >= 2 && Self.schedulers(all).count == 1
        })
        // FLUSHALL under a live holder.
        redis.command(["FLUSHALL"])
        let flushedAt = Date()
        #expect(Harness.wait(Self.deadline + Self.takeover + 5) {
            OracleLog(all[0].oracle).starts.count >= 3 && Self.schedulers(all).count == 1
        })
        #expect(Date().timeIntervalSince(flushedAt) >= Self.renew, "a new scheduler only after the old one is gone")
        usleep(1_000_000)
        #expect(Self.schedulers(all).count == 1)
        let fences = OracleLog(all[0].oracle).starts.map(\.fence)
        #expect(fences == fences.sorted() && Set(fences).count == fences.count, "fences \(fences)")
        Self.checkOracle(all, minimumStarts: 3)
        for supervisor in all { #expect(supervisor.stop() == 0) }
    }

    @Test func aCleanStopHandsOverWithoutTheTakeoverDelay() throws {
        let (redis, all) = Self.settledCluster()
        defer { withExtendedLifetime(redis) {} }  // the server lives as long as the test
        let holder = try #require(Self.holder(all))
        #expect(holder.stop() == 0)
        let stoppedAt = Date()
        let others = all.filter { $0 !== holder }
        #expect(Harness.wait(Self.takeover) { Self.schedulers(others).count == 1 })
        let took = Date().timeIntervalSince(stoppedAt)
        #expect(took < Self.takeover, "took \(took) s: the tombstone lets the next holder start at once")
        #expect(others.contains { $0.logText().contains("released cleanly") })
        #expect(holder.logText().contains("lease released"))
        Self.checkOracle(all, minimumStarts: 2)
        for supervisor in others { #expect(supervisor.stop() == 0) }
    }

    @Test func anUnreachableRedisAtStartMeansWorkersOnlyUntilItAnswers() {
        let reserved = ReservedPort()  // refuses connections until Redis comes up on it
        let port = reserved.port
        let alone = Supervisor(["-w", "2"] + Self.timings, lease: "redis://127.0.0.1:\(port)", name: "redis-absent")
        #expect(Harness.wait(5) { alone.live().count == 2 })
        usleep(1_000_000)
        #expect(alone.liveSchedulers().isEmpty, "no scheduler without the lease")
        #expect(alone.logText().contains("cannot connect to redis at 127.0.0.1:\(port)"), "\(alone.logText())")
        #expect(alone.isRunning())
        let redis = RedisServer(port: reserved.released())
        #expect(Harness.wait(Self.renew + Self.takeover + 3) { alone.liveSchedulers().count == 1 },
                "a scheduler once Redis answers: \(alone.logText())")
        #expect(alone.logText().contains("the store answers again"))
        #expect(alone.stop() == 0)
        withExtendedLifetime(redis) {}
    }

    @Test func aWrongPasswordIsOneLineAndExit77() {
        let redis = RedisServer(password: "right-one")
        defer { withExtendedLifetime(redis) {} }
        let result = Harness.run([Harness.bellwether, "--lease", redis.url, "--", "/bin/true"],
                                 environment: ["BELLWETHER_LEASE_PASSWORD": "wrong-one"])
        #expect(result.status == 77)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("bellwether: --lease: "), "\(result.stderr)")
        #expect(!result.stderr.contains("wrong-one"))
        let good = Supervisor(["-w", "1"] + Self.timings, environment: ["BELLWETHER_LEASE_PASSWORD": "right-one"],
                              lease: redis.url, name: "redis-password")
        #expect(Harness.wait(10) { good.liveSchedulers().count == 1 }, "\(good.logText())")
        #expect(good.stop() == 0)
    }
}
