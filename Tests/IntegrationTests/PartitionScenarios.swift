import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Network partitions against a lease, for any `LeaseStore`: three
/// supervisors, each through its own fault proxy, with `ShortLease`'s
/// timings. What each scenario asserts is safety — never two schedulers
/// (the oracle's flock), each new one started after the old one stopped
/// and with a higher fence — and the README's bounds with room for a loaded
/// machine. The times it measures are printed, one `partition[SCHEME]` line
/// a scenario, all from the same monotonic clock as the oracle's log.
enum PartitionScenarios {
    /// A cluster on `store` that has settled on one scheduler. `stubborn`:
    /// every scheduler starts a forked child and a setsid daemon, which hold
    /// the oracle's flock in its place, and all of them ignore TERM: only the
    /// SIGKILL G after the step-down ends them, and the guard is reaped (and
    /// the key released) only once none of them is left. (The worker that a
    /// new scheduler replaces ignores TERM too: it goes after 1 s.)
    static func settledCluster(_ store: any LeaseStore, name: String, stubborn: Bool = false,
                               sourceLocation: SourceLocation = #_sourceLocation) throws -> PartitionCluster {
        let cluster = stubborn
            ? PartitionCluster(store: store, name: name, options: ["--graceful-timeout", "1"],
                               worker: ["--tree", "--ignore-term"])
            : PartitionCluster(store: store, name: name)
        try #require(Harness.wait(20) { cluster.settled }, "no single scheduler: \(cluster.logs)",
                     sourceLocation: sourceLocation)
        return cluster
    }

    /// The holder alone cut off (`mode` on its proxy) for 3 L while the
    /// others still reach the store — with `restartingTheStore`, the store
    /// is also restarted right after the cut, which without persistence
    /// empties it so that another supervisor acquires at once and only the
    /// takeover delay H ≥ D + G keeps it from starting before the old
    /// scheduler is gone. The old holder stops its scheduler by D + G, before
    /// another supervisor starts one, within the takeover bound, with a
    /// higher fence. Once its proxy passes again, the old holder sees the
    /// new holder's key and starts no scheduler.
    static func holderCutOff(_ store: any LeaseStore, _ mode: FaultProxy.Mode, restartingTheStore: Bool = false,
                             stubborn: Bool = false, label: String) throws {
        let cluster = try settledCluster(store, name: "cut", stubborn: stubborn)
        let h = try #require(cluster.holder)
        let holder = cluster.supervisors[h]
        let old = try #require(holder.liveSchedulers().first)
        let oldFence = try #require(Int(old.env["WORKER_FENCING_TOKEN"] ?? ""))
        let oldTree = try [old.pid] + (stubborn ? #require(holder.trees()[old.pid]) : [])
        let others = cluster.supervisors.indices.filter { $0 != h }

        // A renewal sent just before the cut and delayed by δ still lands,
        // and extends the lease until δ + L after the cut: the takeover's
        // bound grows by δ (never the step-down's).
        var delayed = 0.0
        if case .delay(let seconds) = mode { delayed = seconds }
        let takeoverBound = ShortLease.takeoverBound + delayed
        let cutAt = cluster.proxies[h].set(mode)
        if restartingTheStore { store.restart() }
        #expect(Harness.wait(ShortLease.stepDownBound + 5) { !oldTree.contains(where: Harness.isAlive) },
                "the cut-off holder stops its scheduler: \(cluster.logs)")
        let stopSeen = ChaosOS.monotonic()
        #expect(Harness.wait(takeoverBound + 5) { cluster.schedulers(others).count == 1 },
                "another supervisor takes over: \(cluster.logs)")
        let during = cluster.watch(for: cutAt + 3 * ShortLease.ttl - ChaosOS.monotonic())
        cluster.proxies[h].set(.pass)
        // Chunks read under a delay still go through that long after the switch.
        let after = cluster.watch(for: delayed + ShortLease.renew + ShortLease.takeover + 1)

        let samples = during + after
        #expect(samples.allSatisfy { $0.counts.reduce(0, +) <= 1 }, "two schedulers seen: \(cluster.logs)")
        #expect(samples.allSatisfy { $0.counts[h] == 0 }, "the old holder started a scheduler again: \(cluster.logs)")
        #expect(after.last.map { $0.counts.reduce(0, +) } == 1, "one scheduler at the end")

        let log = cluster.oracleLog
        let firstStart = log.firstStart(after: cutAt)
        let next = try #require(firstStart, "no scheduler started after the cut: \(cluster.logs)")
        let newHolder = try #require(cluster.owner(of: next.pid))
        // A tree SIGKILLed logs no exit: then it stopped when the test saw
        // it gone, and the flock its descendants held shows the order.
        let exit = log.exit(of: old.pid)
        let stoppedAt = exit?.seconds ?? stopSeen
        #expect(newHolder != h, "the cut-off holder started the next scheduler: \(cluster.logs)")
        #expect(exit.map { $0.time < next.time } != false,
                "the new scheduler started before the old one stopped: \(cluster.logs)")
        #expect(next.fence > oldFence, "fence \(oldFence) then \(next.fence)")
        #expect(stoppedAt - cutAt <= ShortLease.stepDownBound, "step-down \(stoppedAt - cutAt) s after the cut")
        #expect(next.seconds - cutAt <= takeoverBound, "takeover \(next.seconds - cutAt) s after the cut")
        #expect(holder.logText().contains("stepping down, no scheduler here (fence \(oldFence))"), "\(holder.logText())")
        // Reconnected, the old holder reads the new holder's key.
        #expect(Harness.wait(5) { holder.logText().contains("lease held by \(next.holder)|\(next.fence)") },
                "\(holder.logText())")
        cluster.checkOracle(minimumStarts: 2)
        let clean = cluster.supervisors[newHolder].logText().contains("fence \(next.fence); the previous holder released cleanly")
        report(store, label, [
            "step-down \(seconds(stoppedAt - cutAt)) after the cut (D + G = \(ShortLease.deadline + ShortLease.grace) s)",
            "new scheduler \(seconds(next.seconds - cutAt)) after the cut (bound \(takeoverBound) s)",
            "\(seconds(next.seconds - stoppedAt)) after the old one stopped",
            "fence \(oldFence) -> \(next.fence)", clean ? "after a clean release" : "after the takeover delay",
        ])
        cluster.stop()
    }

    /// Every supervisor cut off (blackhole) for 3 L: the holder stops its
    /// scheduler by D + G and none starts anywhere while nobody reaches the
    /// store; once the proxies pass, exactly one comes back, with a higher fence.
    static func everyoneCutOff(_ store: any LeaseStore, label: String) throws {
        let cluster = try settledCluster(store, name: "dark")
        let h = try #require(cluster.holder)
        let old = try #require(cluster.supervisors[h].liveSchedulers().first)
        let oldFence = try #require(Int(old.env["WORKER_FENCING_TOKEN"] ?? ""))

        let cutAt = cluster.proxies[h].set(.blackhole)
        for index in cluster.proxies.indices where index != h { cluster.proxies[index].set(.blackhole) }
        #expect(Harness.wait(ShortLease.stepDownBound + 5) { !Harness.isAlive(old.pid) },
                "the holder stops its scheduler: \(cluster.logs)")
        let stopSeen = ChaosOS.monotonic()
        let dark = cluster.watch(for: cutAt + 3 * ShortLease.ttl - ChaosOS.monotonic())
        #expect(dark.allSatisfy { $0.counts.reduce(0, +) == 0 }, "a scheduler while nobody reaches the store: \(cluster.logs)")

        let firstHealAt = cluster.proxies[0].set(.pass)
        var healedAt = firstHealAt
        for proxy in cluster.proxies.dropFirst() { healedAt = proxy.set(.pass) }
        // Each request on a blackholed connection times out within R; the
        // next attempt acquires the expired key and waits out H.
        let bound = 2 * ShortLease.renew + ShortLease.takeover + 2
        #expect(Harness.wait(bound + 5) { cluster.schedulers().count == 1 }, "one scheduler comes back: \(cluster.logs)")
        let settled = cluster.watch(for: 2)
        #expect(settled.allSatisfy { $0.counts.reduce(0, +) == 1 }, "exactly one scheduler: \(cluster.logs)")

        let log = cluster.oracleLog
        let firstStart = log.firstStart(after: cutAt)
        let next = try #require(firstStart, "no scheduler came back: \(cluster.logs)")
        let stoppedAt = log.exit(of: old.pid)?.seconds ?? stopSeen
        #expect(log.exit(of: old.pid) != nil, "the old scheduler logged no exit")
        #expect(next.seconds > firstHealAt, "a scheduler started before any proxy passed")
        #expect(next.fence > oldFence, "fence \(oldFence) then \(next.fence)")
        #expect(stoppedAt - cutAt <= ShortLease.stepDownBound, "step-down \(stoppedAt - cutAt) s after the cut")
        #expect(next.seconds - healedAt <= bound, "back \(next.seconds - healedAt) s after the proxies passed")
        cluster.checkOracle(minimumStarts: 2)
        report(store, label, [
            "step-down \(seconds(stoppedAt - cutAt)) after the cut (D + G = \(ShortLease.deadline + ShortLease.grace) s)",
            "no scheduler for \(seconds(healedAt - stoppedAt))",
            "one back \(seconds(next.seconds - healedAt)) after the proxies passed (bound \(bound) s)",
            "fence \(oldFence) -> \(next.fence)",
        ])
        cluster.stop()
    }

    /// The store frozen while the holder renews, then SIGKILLed and started
    /// again on its port: the renewal in flight is lost. Without persistence
    /// the key is gone and the holder steps down; with it, the holder may
    /// keep its key. Either way never two schedulers, and one at the end.
    static func storeRestartedMidRenewal(_ store: any LeaseStore, label: String) throws {
        let cluster = try settledCluster(store, name: "restart")
        let h = try #require(cluster.holder)
        let old = try #require(cluster.supervisors[h].liveSchedulers().first)
        let oldFence = try #require(Int(old.env["WORKER_FENCING_TOKEN"] ?? ""))

        store.freeze()
        let frozenAt = ChaosOS.monotonic()
        // The holder sends a renewal every R and gives each R: from R after
        // the freeze on, one is always waiting unanswered.
        usleep(useconds_t((ShortLease.renew + 0.1) * 1e6))
        store.restart()
        let restartedAt = ChaosOS.monotonic()
        // By D + G the holder has renewed on the restarted store or stepped down.
        let early = cluster.watch(for: ShortLease.stepDownBound)
        #expect(early.allSatisfy { $0.counts.reduce(0, +) <= 1 }, "two schedulers seen: \(cluster.logs)")
        #expect(Harness.wait(ShortLease.takeoverBound + 5) { cluster.schedulers().count == 1 },
                "one scheduler after the restart: \(cluster.logs)")
        let settled = cluster.watch(for: 2)
        #expect(settled.allSatisfy { $0.counts.reduce(0, +) == 1 }, "exactly one scheduler: \(cluster.logs)")

        let log = cluster.oracleLog
        var outcome: [String]
        if let next = log.firstStart(after: frozenAt) {
            let exit = log.exit(of: old.pid)
            let stoppedAt = try #require(exit, "the old scheduler logged no exit").seconds
            #expect(!Harness.isAlive(old.pid))
            #expect(stoppedAt < next.seconds, "the new scheduler started before the old one stopped: \(cluster.logs)")
            #expect(next.fence > oldFence, "fence \(oldFence) then \(next.fence)")
            #expect(next.seconds - frozenAt <= ShortLease.takeoverBound, "new scheduler \(next.seconds - frozenAt) s after the freeze")
            let owner = cluster.owner(of: next.pid).map(String.init) ?? "?"
            outcome = ["old scheduler stopped \(seconds(stoppedAt - restartedAt)) after the restart",
                       "new one (supervisor \(owner), \(owner == String(h) ? "the same" : "another")) "
                           + "\(seconds(next.seconds - restartedAt)) after the restart",
                       "fence \(oldFence) -> \(next.fence)"]
        } else {
            #expect(store.persistent, "without persistence the key is gone: the holder must step down")
            #expect(Harness.isAlive(old.pid))
            outcome = ["the holder kept its key and its scheduler (fence \(oldFence))"]
        }
        cluster.checkOracle(minimumStarts: 1)
        report(store, label, ["frozen \(seconds(restartedAt - frozenAt)) then restarted"] + outcome)
        cluster.stop()
    }

    private static func seconds(_ value: Double) -> String { String(format: "%.2f s", value) }

    private static func report(_ store: any LeaseStore, _ label: String, _ parts: [String]) {
        print("partition[\(store.scheme)] \(label): " + parts.joined(separator: ", "))
    }
}
