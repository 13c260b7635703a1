extension SupervisorCore {
    /// Plain counters of what the core decided, for `--metrics-bind`: updated
    /// in `handle`, read by nothing that decides.
    public struct Tally: Hashable, Sendable {
        /// Reloads begun (a signal or a control request, not while stopping).
        public var reloadsStarted = 0
        /// Reloads whose generation became ready.
        public var reloadsFinished = 0
        /// Reloads abandoned for the stable generation.
        public var reloadsFailed = 0
        /// How long the last reload that finished or failed took.
        public var lastReloadDuration: Duration?
        /// Schedulers spawned: the first and every handover after it.
        public var schedulersSpawned = 0
        /// Time with no scheduler process while one was wanted, up to
        /// `schedulerMissingSince` if it is missing now.
        public var schedulerMissing = Duration.zero
        public var schedulerMissingSince: Instant?

        /// Time without a scheduler while one was wanted, up to `now`.
        public func schedulerMissing(at now: Instant) -> Duration {
            schedulerMissing + (schedulerMissingSince.map { now - $0 } ?? .zero)
        }
    }

    /// A reload ended, finished or failed, at `now`.
    mutating func tallyReloadEnd(finished: Bool, at now: Instant) {
        if finished { tally.reloadsFinished += 1 } else { tally.reloadsFailed += 1 }
        if let reloadStartedAt { tally.lastReloadDuration = now - reloadStartedAt }
    }

    /// After each event: the clock of a missing scheduler runs while one is
    /// wanted and no scheduler process exists.
    mutating func tallySchedulerPresence(at now: Instant) {
        let missing = wantsScheduler && !workers.contains { $0.role == .scheduler && $0.pid != nil }
        if missing, tally.schedulerMissingSince == nil {
            tally.schedulerMissingSince = now
        } else if !missing, let since = tally.schedulerMissingSince {
            tally.schedulerMissing += now - since
            tally.schedulerMissingSince = nil
        }
    }
}
