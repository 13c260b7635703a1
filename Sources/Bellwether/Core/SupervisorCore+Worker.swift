extension SupervisorCore {
    /// One process the master ordered and has not reaped yet.
    ///
    /// Its life is one `Phase`: ordered, then running, retiring and killed,
    /// each moving only forward. A retire deadline exists only while a
    /// process does, a kill only after it was spawned, readiness only once
    /// there is something to be ready. What is orthogonal to the phase stays
    /// beside it: readiness, the watchdog and the app's own pid are kept in
    /// `Process` through retiring and killing (a ready worker that is killed
    /// was no failed boot), and `background` is chosen at the order.
    public struct Worker: Hashable, Sendable {
        public let ref: WorkerRef
        public let slot: Int
        public let generation: Int
        public let role: Role
        public internal(set) var phase: Phase
        /// Spawned in the background (a reload's replacement), not yet foregrounded.
        public internal(set) var background = false

        public enum Phase: Hashable, Sendable {
            /// The spawn is ordered and not yet confirmed: no process exists.
            /// `at`: when it was ordered (a spawn that fails lived from then).
            case ordered(at: Instant)
            /// The process runs, and nothing has asked it to go.
            case running(Process)
            /// TERM was sent: SIGKILL to its process tree at `deadline`.
            case retiring(Process, deadline: Instant)
            /// SIGKILL was sent to its process tree; only the reap is left.
            /// `failing`: killed for failing (ready timeout, watchdog) rather
            /// than for overstaying a retirement, so its death counts for back-off.
            case killed(Process, failing: Bool)
        }

        /// What is known of a worker once its spawn is confirmed.
        public struct Process: Hashable, Sendable {
            /// The worker's guard, which the master spawned, signals and reaps.
            public let pid: Int32
            /// When the spawn was confirmed: uptime, boot grace and ready timeout count from it.
            public let since: Instant
            /// The app's own pid, as its guard reported it: what operators see.
            public var appPID: Int32?
            /// The app has exited while its guard ends what it left behind: the
            /// worker serves nothing, but keeps its slot (and the token) until reaped.
            public var appGone = false
            /// Ready to serve: READY=1 received, or up for the boot grace.
            public var ready = false
            public var watchdog = Watchdog.silent
            /// Why it is being replaced, once the core chose it: it serves on
            /// until a ready replacement serves its slot, then retires.
            public var recycling: Recycling?
            /// A reason to replace it that waits its turn (one slot at a time):
            /// the app asked, or its tree used too much memory.
            public var recycleWanted: Recycling?
            /// Its tree was measured once (`--max-worker-memory`).
            public var measured = false
        }

        /// Why a worker is recycled.
        public enum Recycling: Hashable, Sendable {
            case age(Duration)
            case memory(bytes: Int, limit: Int)
            /// The app asked (X_BELLWETHER_RECYCLE=1).
            case asked

            /// The reason without its numbers, as `status` and metrics count it.
            public enum Kind: String, Hashable, Sendable, CaseIterable { case age, memory, asked }

            public var kind: Kind {
                switch self {
                case .age: .age
                case .memory: .memory
                case .asked: .asked
                }
            }
        }

        /// Chosen for a planned replacement, and not yet retiring.
        public var isRecycling: Bool { process?.recycling != nil }

        public enum Watchdog: Hashable, Sendable {
            /// No WATCHDOG=1 yet: the watchdog applies only once it has pinged.
            case silent
            /// The last WATCHDOG=1.
            case pinged(Instant)
            /// The watchdog sent SIGABRT at this instant: SIGKILL follows after
            /// the abort grace, whatever the worker sends meanwhile.
            case aborted(at: Instant)
        }

        init(ref: WorkerRef, slot: Int, generation: Int, role: Role, orderedAt: Instant, background: Bool) {
            self.ref = ref
            self.slot = slot
            self.generation = generation
            self.role = role
            self.phase = .ordered(at: orderedAt)
            self.background = background
        }

        /// The process once spawned, in whatever phase; changes made through
        /// it keep the phase.
        public internal(set) var process: Process? {
            get {
                switch phase {
                case .ordered: nil
                case .running(let process), .retiring(let process, _), .killed(let process, _): process
                }
            }
            set {
                guard let newValue else { preconditionFailure("a worker's process cannot be taken back") }
                switch phase {
                case .ordered: preconditionFailure("worker \(ref) has no process before its spawn is confirmed")
                case .running: phase = .running(newValue)
                case .retiring(_, let deadline): phase = .retiring(newValue, deadline: deadline)
                case .killed(_, let failing): phase = .killed(newValue, failing: failing)
                }
            }
        }

        /// The worker's guard, known once the spawn has been confirmed.
        public var pid: Int32? { process?.pid }
        public var appPID: Int32? { process?.appPID }
        public var appGone: Bool { process?.appGone ?? false }
        public var ready: Bool { process?.ready ?? false }
        /// When it was spawned, or (until then) ordered.
        public var startedAt: Instant {
            switch phase {
            case .ordered(let at): at
            case .running(let process), .retiring(let process, _), .killed(let process, _): process.since
            }
        }
        /// When SIGKILL is due, while it retires and has not been killed yet.
        public var retireDeadline: Instant? {
            if case .retiring(_, let deadline) = phase { return deadline }
            return nil
        }
        public var isKilled: Bool {
            if case .killed = phase { return true }
            return false
        }
        /// TERM or SIGKILL was sent: it is on its way out.
        public var isRetiring: Bool {
            switch phase {
            case .ordered, .running: false
            case .retiring, .killed: true
            }
        }
        /// Killed for failing: its death counts for back-off.
        var failed: Bool {
            if case .killed(_, let failing) = phase { return failing }
            return false
        }
        /// The pid logs and `bellwether status` name: the app's once known.
        public var shownPID: Int32? { appPID ?? pid }
        /// Its death was not asked for: it died on its own or was killed for failing.
        var diedUnasked: Bool { !isRetiring || failed }

        /// The spawn succeeded: `ordered` becomes `running`.
        mutating func spawned(pid: Int32, at now: Instant) {
            guard case .ordered = phase else { preconditionFailure("worker \(ref) was spawned twice") }
            phase = .running(Process(pid: pid, since: now))
        }

        /// TERM is sent to the returned pid: SIGKILL is due at `deadline`.
        mutating func retire(by deadline: Instant) -> Int32 {
            guard case .running(let process) = phase else {
                preconditionFailure("worker \(ref) retired while \(phase): only a running worker is retired")
            }
            phase = .retiring(process, deadline: deadline)
            return process.pid
        }

        /// A stop or a withdrawn lease wants it gone sooner: an earlier
        /// SIGKILL, never a later one. Nothing to do unless it retires.
        mutating func hasten(to deadline: Instant) {
            if case .retiring(let process, let pending) = phase {
                phase = .retiring(process, deadline: min(pending, deadline))
            }
        }

        /// SIGKILL was sent to its tree. Killed once for failing, it stays so.
        mutating func kill(failing: Bool) {
            guard let process else { preconditionFailure("worker \(ref) killed before its spawn was confirmed") }
            phase = .killed(process, failing: failing || self.failed)
        }
    }
}

extension SupervisorCore.Worker.Process {
    /// WATCHDOG=1: the watchdog counts from now, unless it already aborted
    /// the app (SIGKILL follows then, whatever it sends).
    mutating func pinged(at now: Instant) {
        if case .aborted = watchdog { return }
        watchdog = .pinged(now)
    }
}
