#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import Bellwether

/// The shell (`Master`) against the recording fake of the system calls: the
/// second test layer, between the pure core's tests and the black-box ones.
/// Each run is simulated time; a whole master's life takes milliseconds.
@Suite struct MasterShellTests {
    /// Runs a master of `arguments` on `fake` until it exits; its exit status.
    static func run(_ arguments: [String], on fake: FakeSystem) throws -> Int32 {
        guard case .run(let loader) = try SettingsLoader.request(arguments: arguments, environment: [:]) else {
            Issue.record("not a run: \(arguments)")
            return -1
        }
        let environment = ["PATH=/usr/bin:/bin", "XDG_RUNTIME_DIR=/fake/run"]
        let configuration = try Configuration.resolve(try loader.load(), environment: environment, directory: "/")
        return try Sys.$calls.withValue(fake) {
            try Master(configuration: configuration, loader: loader, environment: environment, directory: "/").run()
        }
    }

    /// Every worker sends READY=1 a moment after its spawn.
    static func readyWorkers(_ fake: FakeSystem) {
        fake.onSpawn = { fake, pid, _ in fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") } }
    }

    static func slot(_ request: SpawnRequest) -> String? {
        request.environment.first { $0.hasPrefix("WORKER_ID=") }.map { String($0.dropFirst(10)) }
    }

    @Test func aSpawnThatFailsWithEAGAINIsRetriedAndTheSlotFilled() throws {
        let fake = FakeSystem()
        Self.readyWorkers(fake)
        fake.spawnFailures = [EAGAIN, EAGAIN, EAGAIN]
        fake.after(.seconds(5)) { $0.deliver(.terminate) }
        let status = try Self.run(["--workers", "1", "--ready", "notify", "--", "/bin/true"], on: fake)

        #expect(status == 0)
        #expect(!fake.blockedForever && !fake.spinning)
        #expect(fake.lines("could not spawn worker 0").count == 3)
        #expect(fake.lines("Resource temporarily unavailable").count == 3)
        #expect(fake.spawns.count == 4)
        // The first failure is retried at once, each later one after a
        // longer delay than the one before: no busy loop.
        let failedAt = fake.spawns.filter { if case .failure = $0.result { true } else { false } }.map(\.at)
        let retriedAt = fake.spawns.dropFirst(failedAt.count).first?.at
        #expect(failedAt.count == 3)
        if let retriedAt, failedAt.count == 3 {
            #expect(failedAt[2] - failedAt[1] > .zero)
            #expect(retriedAt - failedAt[2] > failedAt[2] - failedAt[1])
        }
        #expect(fake.lines("generation 0 is ready").count == 1)
    }

    @Test func anAcceptThatFailsWithEMFILEPausesTheControlSocketInsteadOfSpinning() throws {
        let fake = FakeSystem()
        Self.readyWorkers(fake)
        fake.pollLimit = 1000
        fake.after(.milliseconds(100)) { fake in
            fake.pendingConnections = 1
            fake.acceptFailures = Array(repeating: -EMFILE, count: 100_000)
        }
        fake.after(.seconds(2)) { $0.deliver(.terminate) }
        let status = try Self.run(["--workers", "1", "--ready", "notify", "--", "/bin/true"], on: fake)

        #expect(status == 0)
        #expect(!fake.spinning, "the master spun on a failing accept: \(fake.polls) polls")
        let failed = fake.accepts.filter { $0.result == -EMFILE }
        // One try per pause of 250 ms over the 1.9 s the connection waited.
        #expect((5...9).contains(failed.count), "\(failed.count) accepts failed")
        #expect(fake.lines("cannot accept a connection: Too many open files").count == 1)
    }

    @Test func aSignalThatArrivesBetweenTwoPollsIsHandledWithoutWaiting() throws {
        let fake = FakeSystem()
        var stopAt: Instant?
        // TERM arrives while the master is busy spawning the worker, after
        // it drained its signals for this turn and before it polls again.
        fake.onSpawn = { fake, pid, _ in
            fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") }
            if stopAt == nil, fake.now > Instant(nanoseconds: 1_000_000_000_000) {
                stopAt = fake.now
                fake.deliver(.terminate)
            }
        }
        // A worker dies a second in: its replacement's spawn is where TERM comes.
        fake.after(.seconds(1)) { fake in
            if let pid = fake.living.keys.first { fake.exit(pid, status: FakeSystem.exited(1)) }
        }
        let status = try Self.run(["--workers", "1", "--ready", "notify", "--", "/bin/true"], on: fake)

        #expect(status == 0)
        #expect(stopAt != nil)
        #expect(!fake.blockedForever)
        // The TERM to the worker went out at the instant the signal came: the
        // master did not sleep on a signal that was already pending.
        let term = fake.kills.first { $0.signal == SIGTERM }
        #expect(term != nil && term?.at == stopAt)
    }

    @Test func aWorkerEnvironmentIsBuiltFromTheOrderAndTheLaunch() throws {
        let fake = FakeSystem()
        Self.readyWorkers(fake)
        fake.after(.seconds(1)) { $0.deliver(.terminate) }
        _ = try Self.run(["--workers", "2", "--ready", "notify", "--timeout", "10", "--env", "APP=1", "--",
                          "/bin/true", "arg"], on: fake)

        let scheduler = try #require(fake.spawns.first { Self.slot($0.request) == "0" }?.request)
        #expect(scheduler.path == "/fake/bin/bellwether-exec")
        #expect(Array(scheduler.arguments.suffix(2)) == ["/bin/true", "arg"])
        for variable in ["WORKERS_COUNT=2", "WORKER_ID=0", "WORKER_GENERATION=0", "WORKER_ROLE=scheduler",
                         "NOTIFY_SOCKET=@fake-notify", "WATCHDOG_USEC=10000000", "WATCHDOG_PID=0", "APP=1"] {
            #expect(scheduler.environment.contains(variable), "\(variable) missing")
        }
        #expect(!scheduler.environment.contains { $0.hasPrefix("LISTEN_FDS=") })
        // The scheduler gets the token (then its link); a worker the link only.
        #expect(scheduler.descriptors.count == 2)
        let worker = try #require(fake.spawns.first { Self.slot($0.request) == "1" }?.request)
        #expect(worker.environment.contains("WORKER_ROLE=worker"))
        #expect(worker.descriptors.count == 1)
    }

    /// The guards (spawned) still alive.
    static func guards(_ fake: FakeSystem) -> [Int32] {
        fake.living.filter { !$0.value.request.path.isEmpty }.keys.sorted()
    }

    /// As PID 1 of a container the master adopts what a `docker exec` left
    /// running: it is no worker's, and is left alone, and it does not hold up
    /// the scheduler that follows.
    @Test func anOrphanTheMasterAdoptsIsLeftAloneAndHoldsUpNoScheduler() throws {
        let fake = FakeSystem()
        Self.readyWorkers(fake)
        fake.after(.seconds(1)) { fake in
            fake.adopt(5000)
            fake.adopt(5001)
        }
        fake.after(.milliseconds(1100)) { $0.exit(5001, status: FakeSystem.exited(0)) }
        // The scheduler's app crashes; its guard, its tree empty, exits like it.
        fake.after(.milliseconds(1500)) { fake in
            if let pid = Self.guards(fake).first { fake.exit(pid, status: FakeSystem.exited(1)) }
        }
        fake.after(.seconds(3)) { $0.deliver(.terminate) }
        let status = try Self.run(["--workers", "1", "--ready", "notify", "--", "/bin/true"], on: fake)

        #expect(status == 0)
        #expect(!fake.kills.contains { $0.pid == 5000 }, "the adopted orphan was signalled")
        #expect(fake.lines("left behind").isEmpty)
        let schedulers = fake.spawns.filter { $0.request.environment.contains("WORKER_ROLE=scheduler") }
        #expect(schedulers.count == 2, "the crashed scheduler is replaced at once")
    }

    /// A guard killed outright: its app comes to the master (and dies of its
    /// death signal), and so does the rest of its tree. Those are SIGKILLed,
    /// and the next scheduler waits for them; an orphan adopted before is not.
    @Test func theTreeOfAGuardKilledOutrightIsKilledButNotAnAdoptedOrphan() throws {
        let fake = FakeSystem()
        fake.onSpawn = { fake, pid, _ in
            fake.after(.milliseconds(5)) { $0.notify(from: pid, "MAINPID=\(pid + 500)") }
            fake.after(.milliseconds(20)) { $0.notify(from: pid, "READY=1") }
        }
        fake.after(.milliseconds(500)) { fake in
            fake.adopt(7000)
            fake.adopt(7001)
        }
        fake.after(.milliseconds(600)) { $0.exit(7001, status: FakeSystem.exited(0)) }
        var killedAt: Instant?
        fake.after(.seconds(1)) { fake in
            guard let guardPID = Self.guards(fake).first else { return }
            killedAt = fake.now
            fake.exit(guardPID, status: FakeSystem.signaled(SIGKILL))
            fake.adopt(guardPID + 500)  // the app, until its death signal lands
            fake.adopt(6000)  // a helper of the app
        }
        fake.after(.seconds(3)) { $0.deliver(.terminate) }
        let status = try Self.run(["--workers", "1", "--ready", "notify", "--", "/bin/true"], on: fake)

        #expect(status == 0)
        let killed = Set(fake.kills.filter { $0.signal == SIGKILL }.map(\.pid))
        #expect(killed.contains(6000) && killed.contains(1001 + 500))
        #expect(!killed.contains(7000))
        #expect(fake.lines("left behind").count == 2)
        let respawned = fake.spawns.last { $0.request.environment.contains("WORKER_ROLE=scheduler") }
        #expect(respawned.map { $0.at >= killedAt! } == true)
    }
}
