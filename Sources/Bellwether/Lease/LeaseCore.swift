/// What the lease engine asks Redis to do (the scripts are in `LeaseScripts`).
public enum LeaseCommand: Hashable, Sendable {
    /// Take the key if it is absent or a tombstone, with a fence of at least `floor`.
    case acquire(floor: Int64)
    /// Extend the key's expiry if it still holds `value`.
    case renew(value: String)
    /// Replace the key by a tombstone if it still holds `value`.
    case release(value: String)
}

/// Redis's answer to a `LeaseCommand`.
public enum LeaseReply: Hashable, Sendable {
    /// `clean`: the key was a tombstone, so the previous holder's scheduler was
    /// reaped before it let go.
    case acquired(fence: Int64, clean: Bool)
    /// Someone holds the key: its value, `holder|fence`.
    case heldBy(String)
    case renewed
    /// A renewal or release found the key no longer ours: its value, if any.
    case notOurs(String?)
    case released
}

public enum LeaseEvent: Hashable, Sendable {
    case tick
    case reply(LeaseReply)
    /// The command in flight failed: timeout, connection error, error reply.
    case failed(String)
    /// The command in flight failed on a configuration problem: Redis
    /// refused the password, user or database, or its TLS certificate failed
    /// verification. Retried as a failure is, but never silently: each new
    /// reason is logged, even in the middle of a run of failures.
    case rejected(String)
    /// Whether this supervisor has a scheduler (alive, starting or retiring),
    /// and whether it wants one at all (not with `--no-scheduler`): a
    /// supervisor that wants none neither takes nor keeps the lease.
    case scheduler(alive: Bool, wanted: Bool)
    /// The master is stopping: step down, release, and stop.
    case stop
}

/// The right to designate a scheduler, with what the scheduler is told.
public struct LeaseGrant: Hashable, Sendable {
    public var fence: Int64
    public var holder: String
}

public enum LeaseAction: Hashable, Sendable {
    case send(LeaseCommand)
    /// Designate a scheduler under this grant, or (nil) none.
    case permit(LeaseGrant?)
    /// The scheduler's guard must stop it once this instant has passed.
    case guardDeadline(Instant)
    case log(LogRecord)
}

/// The lease algorithm as a pure state machine: the shell sends what it is
/// told and feeds back replies, failures and ticks. One command is in flight
/// at a time; the shell times it out after R.
///
/// Invariant: a grant is given only while holding, from the takeover delay H
/// after the acquisition (or at once after a clean release) until D after the
/// send time of the last renewal that counted; the key then still has at
/// least L - D > R to live, and the step-down (TERM, SIGKILL after G) ends the
/// scheduler before a newcomer that acquires at expiry has waited out H.
public struct LeaseCore: Sendable {
    public struct Holding: Hashable, Sendable {
        public var value: String
        public var fence: Int64
        /// The send time of the last renewal (or the acquisition) that counted.
        public var lastCounted: Instant
        public var designateAt: Instant
        public var granted: Bool
    }

    public enum Phase: Hashable, Sendable {
        case seeking
        case holding(Holding)
        /// Waiting for the scheduler to be reaped; then release `value`, if any.
        case steppingDown(value: String?)
        case releasing(value: String, since: Instant)
        case stopped
    }

    public let holder: String
    public let timings: LeaseTimings
    public private(set) var phase: Phase = .seeking
    var inFlight: (command: LeaseCommand, sentAt: Instant)?
    var nextAttemptAt = Instant(nanoseconds: .min)
    /// The highest fence seen, ours or another holder's: the floor of the next.
    public private(set) var highestFence: Int64 = 0
    var schedulerAlive = false
    var schedulerWanted = true
    var stopping = false
    var lastSeenValue: String?
    var failingSince: Instant?
    /// The reason of the last `.rejected`, until a reply comes.
    var lastRejection: String?

    public init(holder: String, timings: LeaseTimings) {
        self.holder = holder
        self.timings = timings
    }

    public var isStopped: Bool { phase == .stopped }

    /// The guard deadline for a scheduler started now, if one may run.
    public var renewDeadline: Instant? {
        if case .holding(let holding) = phase, holding.granted { return holding.lastCounted + timings.renewDeadline }
        return nil
    }

    public mutating func handle(_ event: LeaseEvent, at now: Instant) -> [LeaseAction] {
        var actions: [LeaseAction] = []
        switch event {
        case .tick:
            break
        case .scheduler(let alive, let wanted):
            schedulerAlive = alive
            schedulerWanted = wanted
            if !wanted, case .holding(let holding) = phase {
                stepDown(holding, because: .notWanted, into: &actions)
            }
        case .stop:
            stopping = true
            switch phase {
            case .seeking: if inFlight == nil { phase = .stopped }
            case .holding(let holding): stepDown(holding, because: .stopping, into: &actions)
            case .steppingDown, .releasing, .stopped: break
            }
        case .failed(let reason):
            guard let flight = inFlight else { break }
            inFlight = nil
            noteFailure(reason, rejected: false, of: flight.command, at: now, into: &actions)
        case .rejected(let reason):
            guard let flight = inFlight else { break }
            inFlight = nil
            noteFailure(reason, rejected: true, of: flight.command, at: now, into: &actions)
        case .reply(let reply):
            guard let flight = inFlight else { break }
            inFlight = nil
            lastRejection = nil
            if let since = failingSince {
                failingSince = nil
                actions.log(.reachable(after: now - since))
            }
            accept(reply, to: flight.command, sentAt: flight.sentAt, at: now, into: &actions)
        }
        advance(at: now, into: &actions)
        return actions
    }

    /// The earliest instant at which `handle(.tick)` has work to do.
    public func nextDeadline() -> Instant? {
        var candidates: [Instant] = []
        var sends = false
        switch phase {
        case .seeking: sends = !stopping && schedulerWanted
        case .holding(let holding):
            sends = true
            candidates.append(holding.lastCounted + timings.renewDeadline)
            if !holding.granted { candidates.append(holding.designateAt) }
        case .releasing: sends = true
        case .steppingDown, .stopped: break
        }
        if sends && inFlight == nil { candidates.append(nextAttemptAt) }
        return candidates.min()
    }

    mutating func accept(_ reply: LeaseReply, to command: LeaseCommand, sentAt: Instant, at now: Instant,
                         into actions: inout [LeaseAction]) {
        switch (command, reply) {
        case (.acquire, .acquired(let fence, let clean)):
            highestFence = max(highestFence, fence)
            let value = "\(holder)|\(fence)"
            guard case .seeking = phase, !stopping else {
                phase = .releasing(value: value, since: now)
                nextAttemptAt = now
                return
            }
            // H counts from the reply: the acquisition happened before it.
            let holding = Holding(value: value, fence: fence, lastCounted: sentAt,
                                  designateAt: clean ? now : now + timings.takeoverDelay, granted: false)
            phase = .holding(holding)
            lastSeenValue = value
            actions.log(.acquired(fence: fence, clean: clean, takeoverDelay: timings.takeoverDelay))
        case (.acquire, .heldBy(let value)):
            notice(value)
            if value != lastSeenValue {
                lastSeenValue = value
                actions.log(.heldBy(value))
            }
        case (.renew(let value), .renewed):
            guard case .holding(var holding) = phase, holding.value == value else { return }
            // A renewal counts only if its reply came within D of its sending.
            guard now < sentAt + timings.renewDeadline, sentAt > holding.lastCounted else { return }
            let gap = sentAt - holding.lastCounted
            if gap > timings.renewInterval * 2 {
                actions.log(.renewedLate(gap: gap, stepDownAfter: timings.renewDeadline, fence: holding.fence))
            }
            holding.lastCounted = sentAt
            phase = .holding(holding)
            actions.append(.guardDeadline(sentAt + timings.renewDeadline))
        case (.renew(let value), .notOurs(let current)):
            guard case .holding(let holding) = phase, holding.value == value else { return }
            if let current { notice(current) }
            stepDown(holding, because: .lost(current: current), releasing: false, into: &actions)
        case (.release, let answer):
            phase = stopping ? .stopped : .seeking
            nextAttemptAt = now + timings.renewInterval
            actions.log(.released(clean: answer == .released))
        default:
            break
        }
    }

    /// A failure is logged when a run of them starts; a rejection also
    /// whenever its reason differs from the last rejection's, so that a
    /// certificate that goes bad while Redis is away is not hidden behind
    /// the first "cannot connect".
    mutating func noteFailure(_ reason: String, rejected: Bool, of command: LeaseCommand, at now: Instant,
                              into actions: inout [LeaseAction]) {
        let newRejection = rejected && reason != lastRejection
        if rejected { lastRejection = reason }
        if failingSince == nil || newRejection {
            if failingSince == nil { failingSince = now }
            var holdingFence: Int64?
            if case .holding(let holding) = phase { holdingFence = holding.fence }
            actions.log(.unreachable(reason: reason, rejected: rejected, retryEvery: timings.renewInterval,
                                     stepDownAfter: timings.renewDeadline, holdingFence: holdingFence))
        }
        if case .release = command, case .releasing(_, let since) = phase,
           stopping || now - since >= timings.ttl {
            phase = stopping ? .stopped : .seeking  // the key expires on its own
        }
    }

    mutating func stepDown(_ holding: Holding, because reason: StepDown, releasing: Bool = true,
                           into actions: inout [LeaseAction]) {
        phase = .steppingDown(value: releasing ? holding.value : nil)
        actions.append(.permit(nil))
        actions.log(.stepDown(reason, fence: holding.fence, stopping: stopping))
    }

    /// Deadlines, the grant, the release after a step-down, and the next command.
    mutating func advance(at now: Instant, into actions: inout [LeaseAction]) {
        if stopping, inFlight == nil, case .seeking = phase { phase = .stopped }
        if case .holding(var holding) = phase {
            if now >= holding.lastCounted + timings.renewDeadline {
                stepDown(holding, because: .noRenewal(for: now - holding.lastCounted), into: &actions)
            } else if !holding.granted && now >= holding.designateAt {
                holding.granted = true
                phase = .holding(holding)
                actions.log(.granted(fence: holding.fence))
                actions.append(.permit(LeaseGrant(fence: holding.fence, holder: holder)))
                actions.append(.guardDeadline(holding.lastCounted + timings.renewDeadline))
            }
        }
        if case .steppingDown(let value) = phase, !schedulerAlive {
            if let value {
                phase = .releasing(value: value, since: now)
                nextAttemptAt = now
            } else {
                phase = stopping ? .stopped : .seeking
            }
        }
        guard inFlight == nil, now >= nextAttemptAt else { return }
        let command: LeaseCommand
        switch phase {
        case .seeking where !stopping && schedulerWanted: command = .acquire(floor: highestFence + 1)
        case .holding(let holding): command = .renew(value: holding.value)
        case .releasing(let value, _): command = .release(value: value)
        default: return
        }
        inFlight = (command, now)
        nextAttemptAt = now + timings.renewInterval
        actions.append(.send(command))
    }

    /// Raises the fence floor past another holder's fence.
    mutating func notice(_ value: String) {
        if let bar = value.lastIndex(of: "|"), let fence = Int64(value[value.index(after: bar)...]) {
            highestFence = max(highestFence, fence)
        }
    }
}
