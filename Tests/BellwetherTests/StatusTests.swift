import Foundation
import Testing
@testable import Bellwether

@Suite("Status report and control requests")
struct StatusTests {
    func started(_ plan: Plan) -> SimulatedWorld {
        SimulatedWorld.started(plan, seed: 7)
    }

    @Test func aDeathCountsAsARestartAndARetirementDoesNot() {
        var world = started(Plan(workers: 3))
        world.advance(to: world.now + .seconds(5))
        let scheduler = world.alive.first { $0.value.role == .scheduler }!.key
        world.die(scheduler, status: .signaled(.kill, coreDumped: false))
        #expect(world.core.history[0]?.restarts == 1)
        #expect(world.core.history[0]?.lastExit == .signaled(.kill, coreDumped: false))
        world.send(.reload(Plan(workers: 3)))
        world.quiesce()
        #expect(world.core.history[0]?.restarts == 1, "a reload's retirements are not restarts")
        #expect(world.core.history[1]?.restarts == 0)
        #expect(world.core.history[1]?.lastExit != nil)
    }

    @Test func theReportListsEveryWorkerOnceAsTextAndAsJSON() throws {
        var world = started(Plan(workers: 3))
        world.advance(to: world.now + .seconds(75))
        let report = StatusReport(core: world.core, masterPID: 42, masterUptime: .seconds(3700),
                                  lease: ("file /x.lock", "held by the scheduler"), now: world.now)
        #expect(report.rows.map(\.slot) == [0, 1, 2])
        #expect(report.rows.filter { $0.role == .scheduler }.count == 1)
        let lines = report.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == "master 42: generation 0, 3 workers, up 1h01m")
        #expect(lines[2] == "lease: file /x.lock, held by the scheduler")
        #expect(lines[4].hasPrefix("SLOT  PID"))
        #expect(lines[5].contains("scheduler") && lines[5].contains(" " + StatusReport.age(world.now
            - world.core.workers.first { $0.role == .scheduler }!.startedAt) + " "), "\(report.text)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.text.utf8)) as? [String: Any])
        #expect((object["master"] as? [String: Any])?["pid"] as? Int == 42)
        #expect((object["slots"] as? [[String: Any]])?.count == 3)
        #expect(object["scheduler"] as? Int == world.core.schedulerPID.map { Int($0) })
    }

    @Test func statusShowsASlotBackingOffWithItsRestartsLastExitAndNextAttempt() throws {
        var world = SimulatedWorld.booting(Plan(workers: 2, scheduler: false, bootAttempts: 0))
        world.failBoots(slot: 1, times: 4)  // restarted at once, then after 0.1, 0.2 and now 0.4 s
        let report = StatusReport(core: world.core, masterPID: 42, masterUptime: .seconds(1), lease: nil,
                                  now: world.now + .milliseconds(150))
        let row = try #require(report.rows.first { $0.slot == 1 })
        #expect(report.rows.map(\.slot) == [0, 1])
        #expect(row.state == "backoff" && row.pid == nil)
        #expect(row.restarts == 4, "first-generation boot failures count")
        #expect(row.lastExit == "exit status 1")
        #expect(row.nextAttempt == .milliseconds(250))
        #expect(report.text.contains("backoff, next attempt in 0.3s"), "\(report.text)")
        #expect(report.json.text.contains("\"state\":\"backoff\""))
        #expect(report.json.text.contains("\"next_attempt\":0.25"), "\(report.json.text)")
        // Once it runs again the row is its worker's.
        world.advance(to: world.now + .milliseconds(500))
        let later = StatusReport(core: world.core, masterPID: 42, masterUptime: .seconds(2), lease: nil, now: world.now)
        #expect(later.rows.filter { $0.slot == 1 }.map(\.state) == ["starting"])
        #expect(later.rows.allSatisfy { $0.nextAttempt == nil })
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func jsonEscapesWhatItMust() throws {
        let value = JSON.object([("a\"b", .string("line\nbreak\u{1}")), ("n", .null), ("d", .double(.nan)),
                                 ("list", .array([.int(-1), .bool(true), .double(0.5)]))])
        let parsed = try JSONSerialization.jsonObject(with: Data(value.text.utf8)) as? [String: Any]
        #expect(parsed?["a\"b"] as? String == "line\nbreak\u{1}")
        #expect(parsed?["d"] is NSNull)
    }

    @Test func ageIsShortAndExact() {
        #expect(StatusReport.age(.milliseconds(850)) == "850ms")
        #expect(StatusReport.age(.seconds(42)) == "42s")
        #expect(StatusReport.age(.seconds(192)) == "3m12s")
        #expect(StatusReport.age(.seconds(5 * 3600 + 180)) == "5h03m")
        #expect(StatusReport.age(.seconds(2 * 86400 + 4 * 3600)) == "2d04h")
    }

    @Test func controlRequestsParseStrictly() {
        #expect(ControlRequest(line: "status") == .status(json: false))
        #expect(ControlRequest(line: "status json") == .status(json: true))
        #expect(ControlRequest(line: "scale 7") == .scale(7))
        for bad in ["", "status xml", "scale", "scale 0", "scale 4097", "scale -1", "scale 1 2", "reload now", "STOP",
                    "stop\u{0}"] {
            #expect(ControlRequest(line: bad) == nil, "\(bad)")
        }
        for request in [ControlRequest.status(json: true), .reload, .stop, .scale(12)] {
            #expect(ControlRequest(line: request.line) == request)
        }
    }
}
