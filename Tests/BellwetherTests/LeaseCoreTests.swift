import Testing
@testable import Bellwether
import TestSupport

/// The Redis lease algorithm without Redis: replies, failures and time are
/// fed by hand (and at random), and the grant is checked against the rules.
@Suite("Lease core")
struct LeaseCoreTests {
    static var timings: LeaseTimings {
        var timings = LeaseTimings()
        (timings.ttl, timings.renewInterval, timings.renewDeadline) = (.seconds(3), .milliseconds(400), .seconds(2))
        (timings.grace, timings.takeoverDelay) = (.milliseconds(500), .milliseconds(2600))
        return timings
    }

    struct Driver {
        var core = LeaseCore(holder: "me", timings: LeaseCoreTests.timings)
        var now = Instant(nanoseconds: 1_000_000_000)
        var sent: [LeaseCommand] = []
        var grant: LeaseGrant?
        var guardDeadline: Instant?
        var logs: [String] = []

        mutating func handle(_ event: LeaseEvent) {
            for action in core.handle(event, at: now) {
                switch action {
                case .send(let command): sent.append(command)
                case .permit(let value): grant = value
                case .guardDeadline(let deadline): guardDeadline = deadline
                case .log(let record): logs.append(record.message)
                }
            }
        }

        mutating func at(_ milliseconds: Int64, _ event: LeaseEvent = .tick) {
            now = Instant(nanoseconds: 1_000_000_000 + milliseconds * 1_000_000)
            handle(event)
        }
    }

    @Test func aFreshKeyIsAcquiredAndTheSchedulerWaitsOutH() {
        var d = Driver()
        d.at(0)
        #expect(d.sent == [.acquire(floor: 1)])
        d.at(5, .reply(.acquired(fence: 7, clean: false)))
        #expect(d.grant == nil)
        #expect(d.core.nextDeadline() == Instant(nanoseconds: 1_000_000_000 + 400_000_000), "renew at R")
        for t in stride(from: Int64(400), through: 2400, by: 400) {
            d.at(t)
            #expect(d.sent.last == .renew(value: "me|7"))
            d.at(t + 10, .reply(.renewed))
        }
        d.at(2604)
        #expect(d.grant == nil, "H counts from the reply")
        d.at(2605)
        #expect(d.grant == LeaseGrant(fence: 7, holder: "me"))
        #expect(d.guardDeadline == Instant(nanoseconds: 1_000_000_000 + 4_400_000_000), "D after the last renewal sent")
    }

    @Test func aTombstoneMeansNoTakeoverDelay() {
        var d = Driver()
        d.at(0)
        d.at(3, .reply(.acquired(fence: 2, clean: true)))
        #expect(d.grant?.fence == 2)
    }

    @Test func withoutACountedRenewalForDTheHolderStepsDownThenReleases() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.acquired(fence: 3, clean: true)))
        d.handle(.scheduler(alive: true, wanted: true))
        var t: Int64 = 400
        while t < 2000 {
            d.at(t)
            #expect(d.sent.last == .renew(value: "me|3"))
            d.at(t + 1, .failed("timeout"))
            t += 400
        }
        #expect(d.grant != nil)
        d.at(1999)
        #expect(d.grant != nil)
        d.at(2000)
        #expect(d.grant == nil, "step down at D after the acquisition was sent")
        let count = d.sent.count
        d.at(2500)
        #expect(d.sent.count == count, "no release while the scheduler lives")
        d.at(2600, .scheduler(alive: false, wanted: true))
        #expect(d.sent.last == .release(value: "me|3"))
        d.at(2610, .reply(.released))
        #expect(d.core.phase == .seeking)
        d.at(3010)
        #expect(d.sent.last == .acquire(floor: 4))
    }

    @Test func aRenewalAnsweredAfterDDoesNotCount() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.acquired(fence: 1, clean: true)))
        d.at(400)
        d.at(2399, .reply(.renewed))  // sent at 400, answered 1999 ms later: counts
        #expect(d.guardDeadline == Instant(nanoseconds: 1_000_000_000 + 2_400_000_000))
        d.at(2400)
        #expect(d.sent.last == .renew(value: "me|1"))
        d.at(4401, .reply(.renewed))  // 2001 ms later: does not count
        #expect(d.grant == nil, "the deadline 400 + D passed first")
    }

    @Test func aKeyTakenByAnotherStepsDownAtOnceWithoutRelease() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.acquired(fence: 5, clean: true)))
        d.handle(.scheduler(alive: true, wanted: true))
        d.at(400)
        d.at(401, .reply(.notOurs("other|9")))
        #expect(d.grant == nil)
        d.at(500, .scheduler(alive: false, wanted: true))
        #expect(!d.sent.contains { if case .release = $0 { true } else { false } })
        d.at(900)
        #expect(d.sent.last == .acquire(floor: 10), "the floor passes the fence seen")
    }

    @Test func aSupervisorThatWantsNoSchedulerLetsTheLeaseGo() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.acquired(fence: 4, clean: true)))
        #expect(d.grant != nil)
        d.at(10, .scheduler(alive: false, wanted: false))
        #expect(d.grant == nil)
        #expect(d.sent.last == .release(value: "me|4"))
        d.at(11, .reply(.released))
        d.at(5000)
        #expect(d.sent.last == .release(value: "me|4"), "no acquire while no scheduler is wanted")
        #expect(d.core.nextDeadline() == nil)
    }

    @Test func anotherHoldersFenceRaisesTheFloor() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.heldBy("them|41")))
        d.at(400)
        #expect(d.sent.last == .acquire(floor: 42))
        #expect(d.logs.contains { $0.contains("held by them|41") })
    }

    @Test func stoppingReleasesOnceTheSchedulerIsGone() {
        var d = Driver()
        d.at(0)
        d.at(1, .reply(.acquired(fence: 2, clean: true)))
        d.handle(.scheduler(alive: true, wanted: true))
        d.at(100, .stop)
        #expect(d.grant == nil)
        d.at(200, .scheduler(alive: false, wanted: true))
        #expect(d.sent.last == .release(value: "me|2"))
        d.at(201, .failed("connection refused"))
        #expect(d.core.isStopped, "one failed release at stop: the key expires on its own")
        var idle = Driver()
        idle.at(0)
        idle.at(1, .reply(.heldBy("x|1")))
        idle.at(2, .stop)
        #expect(idle.core.isStopped)
    }

    /// A rejection (wrong password, a certificate that fails verification)
    /// is a failure, retried and stepped down from as one; but each new
    /// reason is logged at error level, even after a "cannot connect" began
    /// the run of failures, and the same reason only once.
    @Test func aNewRejectionIsLoggedEvenInTheMiddleOfARunOfFailures() {
        var d = Driver()
        var records: [LogRecord] = []
        func step(_ milliseconds: Int64, _ event: LeaseEvent) {
            d.now = Instant(nanoseconds: 1_000_000_000 + milliseconds * 1_000_000)
            for case .log(let record) in d.core.handle(event, at: d.now) { records.append(record) }
        }
        step(0, .tick)
        step(1, .failed("cannot connect to redis at h:1: Connection refused"))
        step(400, .tick)
        step(401, .rejected("TLS with redis at h:1: certificate verify failed: certificate has expired"))
        step(800, .tick)
        step(801, .rejected("TLS with redis at h:1: certificate verify failed: certificate has expired"))
        step(1200, .tick)
        step(1201, .failed("cannot connect to redis at h:1: Connection refused"))
        #expect(d.core.nextDeadline() != nil, "still retrying")
        #expect(records.map(\.event) == ["lease_unreachable", "lease_rejected"], "\(records.map(\.message))")
        #expect(records.last?.level == .error)
        #expect(records.last?.message.contains("certificate has expired") == true)
        step(1600, .tick)
        step(1601, .reply(.heldBy("other|3")))
        step(2000, .tick)
        step(2001, .rejected("TLS with redis at h:1: certificate verify failed: certificate has expired"))
        #expect(records.filter { $0.event == "lease_rejected" }.count == 2, "logged again after Redis answered")
    }

    /// Random replies, failures and delays: a grant only while holding and
    /// before D since the last counted renewal, one command at a time, and
    /// no deadline left in the past.
    @Test(arguments: 0..<10)
    func randomHistoriesKeepTheGrantInsideTheLease(batch: Int) {
        for seed in 0..<200 {
            var rng = SplitMix(seed: UInt64(batch * 200 + seed))
            var d = Driver()
            var inFlight: LeaseCommand?
            var sentCount = 0
            for _ in 0..<200 {
                d.now = d.now + .milliseconds(Int64(rng.below(700)))
                switch rng.below(10) {
                case 0..<4: d.handle(.tick)
                case 4..<8:
                    guard let command = inFlight else { d.handle(.tick); break }
                    let reply: LeaseReply
                    switch command {
                    case .acquire(let floor):
                        reply = rng.chance(0.5) ? .acquired(fence: floor + Int64(rng.below(3)), clean: rng.chance(0.3))
                            : .heldBy("other|\(rng.below(50))")
                    case .renew: reply = rng.chance(0.8) ? .renewed : .notOurs(nil)
                    case .release: reply = .released
                    }
                    inFlight = nil
                    d.handle(.reply(reply))
                case 8:
                    inFlight = nil
                    d.handle(rng.chance(0.8) ? .failed("simulated") : .rejected("certificate verify failed"))
                default: d.handle(.scheduler(alive: rng.chance(0.5), wanted: rng.chance(0.9)))
                }
                if d.sent.count > sentCount {
                    #expect(inFlight == nil && d.sent.count == sentCount + 1, "one command at a time")
                    inFlight = d.sent.last
                    sentCount = d.sent.count
                }
                if d.grant != nil {
                    guard case .holding(let holding) = d.core.phase else {
                        Issue.record("grant without holding, seed \(seed)")
                        break
                    }
                    #expect(d.now < holding.lastCounted + Self.timings.renewDeadline)
                    #expect(d.now >= holding.designateAt)
                }
                if let next = d.core.nextDeadline() { #expect(next > d.now || inFlight != nil, "seed \(seed)") }
            }
        }
    }
}
