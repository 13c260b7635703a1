/// What the lease engine tells the log, as values; their words are in
/// `LogWords.swift`, beside the supervisor core's.
extension LeaseCore {
    enum Happening: Hashable, Sendable {
        /// Redis answers again, after failing for that long.
        case reachable(after: Duration)
        /// `clean`: the previous holder released the key, so no takeover
        /// delay (`takeoverDelay`) is waited out.
        case acquired(fence: Int64, clean: Bool, takeoverDelay: Duration)
        /// Another supervisor holds the key: its value, `holder|fence`.
        case heldBy(String)
        /// A renewal that counted came `gap` after the previous one.
        case renewedLate(gap: Duration, stepDownAfter: Duration, fence: Int64)
        /// The release found the key still ours (`clean`) or not.
        case released(clean: Bool)
        /// A command failed: retried every `retryEvery`; `holdingFence`: the
        /// fence held meanwhile, which is given up after `stepDownAfter`.
        /// `rejected`: on a configuration problem (credentials, certificate).
        case unreachable(reason: String, rejected: Bool, retryEvery: Duration, stepDownAfter: Duration,
                         holdingFence: Int64?)
        /// No scheduler here from now on. `stopping`: the master asked for
        /// it, so nothing went wrong.
        case stepDown(StepDown, fence: Int64, stopping: Bool)
        /// The takeover delay is over: a scheduler may be designated.
        case granted(fence: Int64)
    }

    /// Why the lease holder steps down.
    enum StepDown: Hashable, Sendable {
        /// `--no-scheduler`: no scheduler is wanted here.
        case notWanted
        case stopping
        /// A renewal found the key gone, or holding `current`.
        case lost(current: String?)
        /// No renewal counted for `silence`: the key may have expired.
        case noRenewal(for: Duration)
    }
}

extension [LeaseAction] {
    /// Logs `happening` in the words of `LogWords.swift`.
    mutating func log(_ happening: LeaseCore.Happening) { append(.log(happening.record)) }
}
