import Testing

/// Network partitions between supervisors and their lease store: the
/// scenarios are `PartitionScenarios`, for any `LeaseStore`; here they run
/// against Redis. Each test has its store, proxies, supervisors and oracle.
@Suite struct PartitionTests {
    /// `scripts/test` requires Redis (BELLWETHER_REQUIRE_REDIS=1): then these
    /// tests must run, with the proxy's interpreter, rather than be skipped.
    @Test func theProxyIsThereWhereRequired() {
        #expect(!RedisServer.required || FaultProxy.available,
                "BELLWETHER_REQUIRE_REDIS=1 but \(FaultProxy.python) or \(FaultProxy.script) is missing")
    }

    @Suite(.ownThread, .enabled(if: RedisServer.available && FaultProxy.available,
                                "needs redis-server and python3 (scripts/test installs them)"))
    struct Redis {
        @Test func theHolderBlackholedStepsDownBeforeAnotherTakesOver() throws {
            try PartitionScenarios.holderCutOff(RedisServer(), .blackhole, label: "holder blackholed for 3 L")
        }

        /// D + 1 s = L: every renewal sent after the cut reaches Redis after
        /// the key has expired. D + 0.5 s < L - R: the late renewals still
        /// extend the key, so the old holder's release (sent once its
        /// scheduler is reaped) arrives while the key is its own and leaves a
        /// tombstone, and the next holder starts without the takeover delay.
        @Test(arguments: [1.0, 0.5])
        func theHolderDelayedPastTheDeadlineStepsDownBeforeAnotherTakesOver(beyondDeadline: Double) throws {
            try PartitionScenarios.holderCutOff(RedisServer(), .delay(ShortLease.deadline + beyondDeadline),
                                                label: "holder delayed D + \(beyondDeadline) s for 3 L")
        }

        @Test func everyoneBlackholedLeavesNoSchedulerAndOneComesBack() throws {
            try PartitionScenarios.everyoneCutOff(RedisServer(), label: "everyone blackholed for 3 L")
        }

        @Test(arguments: [false, true])
        func aStoreRestartedMidRenewalNeverGivesTwoSchedulers(persistent: Bool) throws {
            try PartitionScenarios.storeRestartedMidRenewal(RedisServer(persistent: persistent),
                                                            label: "restart mid-renewal, " + (persistent ? "append-only file" : "no persistence"))
        }

        /// The clean release through a delayed link, with a scheduler tree
        /// that ignores TERM: the key is released only once the SIGKILL G
        /// after the step-down has left nothing of the tree, and the next
        /// holder, which starts at once, finds the oracle free.
        @Test func aCleanReleaseComesOnlyOnceTheWholeSchedulerTreeIsGone() throws {
            try PartitionScenarios.holderCutOff(RedisServer(), .delay(ShortLease.deadline + 0.5), stubborn: true,
                                                label: "holder delayed D + 0.5 s, scheduler tree ignoring TERM")
        }

        /// The case the rule H ≥ D + G is for: the holder cannot hear that
        /// its key is gone, while the others acquire the empty store at once.
        /// With a scheduler tree that ignores TERM, only H - (D + G) = 0.1 s
        /// (and how long before the cut the last renewal counted) separate
        /// the SIGKILL from the next scheduler's start.
        @Test(arguments: [false, true])
        func aStoreRestartedEmptyWhileTheHolderIsCutOffWaitsOutTheOldScheduler(stubborn: Bool) throws {
            try PartitionScenarios.holderCutOff(RedisServer(), .blackhole, restartingTheStore: true, stubborn: stubborn,
                                                label: "holder blackholed, store restarted empty"
                                                    + (stubborn ? ", scheduler tree ignoring TERM" : ""))
        }
    }

    /// The same scenarios through PostgreSQL (directly; PgBouncer is in
    /// `PostgresLeaseTests`). Its store keeps the row across a restart.
    @Suite(.ownThread, .enabled(if: PostgresServer.available && FaultProxy.available,
                                "needs postgresql and python3 (scripts/test installs them)"))
    struct Postgres {
        @Test func theHolderBlackholedStepsDownBeforeAnotherTakesOver() throws {
            try PartitionScenarios.holderCutOff(PostgresServer(), .blackhole, label: "holder blackholed for 3 L")
        }

        @Test(arguments: [1.0, 0.5])
        func theHolderDelayedPastTheDeadlineStepsDownBeforeAnotherTakesOver(beyondDeadline: Double) throws {
            try PartitionScenarios.holderCutOff(PostgresServer(), .delay(ShortLease.deadline + beyondDeadline),
                                                label: "holder delayed D + \(beyondDeadline) s for 3 L")
        }

        @Test func everyoneBlackholedLeavesNoSchedulerAndOneComesBack() throws {
            try PartitionScenarios.everyoneCutOff(PostgresServer(), label: "everyone blackholed for 3 L")
        }

        @Test func aServerRestartedMidRenewalNeverGivesTwoSchedulers() throws {
            try PartitionScenarios.storeRestartedMidRenewal(PostgresServer(), label: "restart mid-renewal")
        }

        /// No clean release here (the reconnection's login cannot pass the
        /// delay within R): a scheduler tree that ignores TERM is SIGKILLed
        /// at G, long before the next holder has waited out H.
        @Test func aSchedulerTreeIgnoringTERMIsGoneBeforeTheNextStarts() throws {
            try PartitionScenarios.holderCutOff(PostgresServer(), .delay(ShortLease.deadline + 0.5), stubborn: true,
                                                label: "holder delayed D + 0.5 s, scheduler tree ignoring TERM")
        }
    }
}
