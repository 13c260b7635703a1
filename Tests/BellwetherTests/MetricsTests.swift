import Testing
@testable import Bellwether

@Suite("Metrics: the core's tallies, the exposition text, the HTTP answers")
struct MetricsTests {
    func started(_ plan: Plan) -> SimulatedWorld { SimulatedWorld.started(plan, seed: 3, alwaysReady: true) }

    func schedulerPID(_ world: SimulatedWorld) -> Int32 { world.alive.first { $0.value.role == .scheduler }!.key }

    /// The samples of the text, "name{labels}" -> value.
    func samples(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let space = line.lastIndex(of: " ")!
            result[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        return result
    }

    @Test func reloadsAreCountedWithTheirOutcomeAndDuration() throws {
        let plan = Plan(workers: 2, notifyReadiness: true, readyTimeout: .seconds(5))
        var world = started(plan)
        #expect(world.core.tally.reloadsStarted == 0)
        world.send(.reload(plan))
        let reloadedAt = world.now
        world.quiesce()
        #expect(world.core.tally.reloadsStarted == 1)
        #expect(world.core.tally.reloadsFinished == 1)
        #expect(world.core.tally.reloadsFailed == 0)
        let took = try #require(world.core.tally.lastReloadDuration)
        #expect(took > .zero && took <= world.now - reloadedAt)

        world.neverReadyRate = 1
        world.send(.reload(plan))
        world.advance(to: world.now + .milliseconds(5100))
        #expect(world.core.generation == 1, "abandoned at the ready timeout")
        #expect(world.core.tally.reloadsStarted == 2)
        #expect(world.core.tally.reloadsFailed == 1)
        let failedAfter = try #require(world.core.tally.lastReloadDuration)
        #expect(failedAfter >= .seconds(5) && failedAfter <= .milliseconds(5100), "the ready timeout")
    }

    @Test func handoversAndTheTimeWithoutASchedulerAreCounted() {
        var world = started(Plan(workers: 2))
        #expect(world.core.tally.schedulersSpawned == 1)
        #expect(world.core.tally.schedulerMissingSince == nil)
        let missingAtStart = world.core.tally.schedulerMissing(at: world.now)
        world.advance(to: world.now + .seconds(5))
        #expect(world.core.tally.schedulerMissing(at: world.now) == missingAtStart, "no clock while one runs")
        world.die(schedulerPID(world), status: .signaled(.kill, coreDumped: false))
        #expect(world.core.tally.schedulersSpawned == 2)
        #expect(world.core.history[0]?.exits == [.signaled(.kill, coreDumped: false): 1])
        #expect(world.core.history[0]?.restarts == 1)

        // Without a scheduler wanted, no clock runs at all.
        var none = started(Plan(workers: 2, scheduler: false))
        none.advance(to: none.now + .seconds(5))
        #expect(none.core.tally.schedulerMissing(at: none.now) == .zero)
        #expect(none.core.tally.schedulersSpawned == 0)
    }

    @Test func theMissingSchedulerClockRunsUntilOneIsSpawned() {
        var tally = SupervisorCore.Tally()
        tally.schedulerMissing = .seconds(2)
        tally.schedulerMissingSince = Instant(nanoseconds: 10_000_000_000)
        #expect(tally.schedulerMissing(at: Instant(nanoseconds: 13_500_000_000)) == .milliseconds(5500))
    }

    @Test func theTextHasEveryFamilyWithHelpAndTypeAndTheCoresNumbers() {
        var world = started(Plan(workers: 3))
        world.advance(to: world.now + .seconds(5))
        let worker = world.alive.first { $0.value.role == .worker }!
        world.die(worker.key, status: .exited(3))
        world.quiesce()
        let report = MetricsReport(core: world.core, lease: MetricsReport.Lease(kind: "redis", state: "holding",
                                                                               fence: 7),
                                   masterUptime: .seconds(90), usage: .init(cpuSeconds: 1.25, residentBytes: 4096),
                                   now: world.now)
        let text = report.text
        let lines = text.split(separator: "\n")
        // Each family: HELP, then TYPE, then its samples, all of its name.
        var families: [String] = []
        for (index, line) in lines.enumerated() where line.hasPrefix("# HELP ") {
            let name = String(line.split(separator: " ")[2])
            families.append(name)
            #expect(lines[index + 1].hasPrefix("# TYPE \(name) "), "\(name)")
        }
        #expect(Set(families).count == families.count, "no family twice")
        #expect(families.allSatisfy { $0.hasPrefix("bellwether_") })
        for line in lines where !line.hasPrefix("#") {
            #expect(families.contains { line.hasPrefix($0 + " ") || line.hasPrefix($0 + "{") }, "\(line)")
        }
        let values = samples(text)
        #expect(values["bellwether_workers{state=\"ready\",role=\"scheduler\"}"] == "1")
        #expect(values["bellwether_workers{state=\"ready\",role=\"worker\"}"] == "2")
        #expect(values["bellwether_workers{state=\"killed\",role=\"worker\"}"] == "0")
        #expect(values["bellwether_workers_configured"] == "3")
        #expect(values["bellwether_generation"] == "0")
        #expect(values["bellwether_worker_restarts_total{slot=\"\(worker.value.slot)\"}"] == "1")
        #expect(values["bellwether_worker_exits_total{slot=\"\(worker.value.slot)\",reason=\"exited\",status=\"3\"}"]
                == "1")
        #expect(values["bellwether_scheduler_pid"] == String(world.core.schedulerPID!))
        #expect(values["bellwether_scheduler_spawns_total"] == "1")
        #expect(values["bellwether_lease_info{kind=\"redis\",state=\"holding\"}"] == "1")
        #expect(values["bellwether_lease_fence"] == "7")
        #expect(values["bellwether_master_cpu_seconds_total"] == "1.25")
        #expect(values["bellwether_master_resident_memory_bytes"] == "4096")
        #expect(values["bellwether_master_uptime_seconds"] == "90.0")
        #expect(values["bellwether_reload_last_duration_seconds"] == nil, "no sample before a reload ended")
        #expect(text.contains("# TYPE bellwether_worker_exits_total counter\n"))
        #expect(text.hasSuffix("\n"))
    }

    @Test func withoutLeaseOrUsageTheirFamiliesAreLeftOut() {
        let world = started(Plan(workers: 1, scheduler: false))
        let text = MetricsReport(core: world.core, lease: nil, masterUptime: .zero, usage: nil, now: world.now).text
        #expect(!text.contains("bellwether_lease"))
        #expect(!text.contains("bellwether_master_cpu"))
        #expect(samples(text)["bellwether_scheduler_pid"] == "0")
        #expect(samples(text)["bellwether_scheduler_uptime_seconds"] == "0.0")
    }

    @Test func labelValuesAreEscaped() {
        #expect(MetricsReport.escaped("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test func usageIsReadFromProcStatAndStatm() {
        // The command name may hold spaces and parentheses.
        let stat = "1234 (bell wether) (x) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 1 0 100 "
            + "10000000 300 18446744073709551615"
        let usage = MetricsReport.usage(stat: stat, statm: "2000 300 200 10 0 150 0\n", ticksPerSecond: 100,
                                        pageSize: 4096)
        #expect(usage == MetricsReport.Usage(cpuSeconds: 1.75, residentBytes: 300 * 4096))
        #expect(MetricsReport.usage(stat: "garbage", statm: "1 2", ticksPerSecond: 100, pageSize: 4096) == nil)
    }

    func answer(_ request: String) -> String {
        String(decoding: MetricsListener.answer(Array(request.utf8)) { "metric 1\n" }, as: UTF8.self)
    }

    @Test func getMetricsIsAnsweredAndOtherRequestsAreRefused() {
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(ok.contains("Content-Length: 9\r\n"))
        #expect(ok.hasSuffix("\r\n\r\nmetric 1\n"))
        #expect(answer("GET /metrics?x=1 HTTP/1.0").hasPrefix("HTTP/1.1 200 "))
        #expect(answer("HEAD /metrics HTTP/1.1").hasSuffix("Connection: close\r\n\r\n"))
        #expect(answer("GET / HTTP/1.1").hasPrefix("HTTP/1.1 404 "))
        let post = answer("POST /metrics HTTP/1.1")
        #expect(post.hasPrefix("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"))
        #expect(answer("hello").hasPrefix("HTTP/1.1 400 "))
    }

    @Test func aRequestEndsAtItsBlankLine() {
        #expect(MetricsListener.headerEnd(in: Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8)) == nil)
        #expect(MetricsListener.headerEnd(in: Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)) == 33)
        #expect(MetricsListener.headerEnd(in: Array("GET / HTTP/1.0\n\n".utf8)) == 15)
    }
}
