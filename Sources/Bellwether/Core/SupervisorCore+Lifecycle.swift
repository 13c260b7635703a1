/// The supervisor's own life: it starts once (`.start`), stops once (a
/// stop may only be hurried), and once its last worker is reaped after the
/// stop it orders `.exit` and has nothing left to decide.
extension SupervisorCore {
    enum Lifecycle: Hashable, Sendable {
        /// Waiting for `.start`: nothing else can come before it.
        case notStarted
        case running
        /// Every worker is retired; SIGKILL to those left at `deadline`.
        case stopping(deadline: Instant)
        /// Every worker is gone and `.exit` was ordered.
        case finished
    }

    /// Stopping, or stopped: a stop is never taken back.
    public var isStopping: Bool {
        switch lifecycle {
        case .notStarted, .running: false
        case .stopping, .finished: true
        }
    }

    public var isFinished: Bool { lifecycle == .finished }

    /// When SIGKILL is due for every worker left, while stopping.
    var stopDeadline: Instant? {
        if case .stopping(let deadline) = lifecycle { return deadline }
        return nil
    }

    /// A stop, or a quicker one: the deadline only ever moves closer.
    mutating func beginStop(quick: Bool, at now: Instant, into actions: inout [Action]) {
        let grace = quick ? min(timings.quickStopGrace, plan.gracefulTimeout) : plan.gracefulTimeout
        let deadline = now + grace
        if let current = stopDeadline, current <= deadline { return }
        lifecycle = .stopping(deadline: deadline)
        actions.append(.announce(.stopping))
        actions.log(.stopping(quick: quick, workers: workers.count, grace: grace))
        for index in workers.indices { workers[index].hasten(to: deadline) }
        if token == .held {
            token = .notHeld
            actions.append(.releaseToken)
        }
        tokenWait = nil
    }

    /// While stopping: TERM to every worker not yet retiring, and `.exit`
    /// once none is left.
    mutating func reconcileStop(deadline: Instant, into actions: inout [Action]) {
        for index in workers.indices where workers[index].pid != nil && !workers[index].isRetiring {
            retire(at: index, deadline: deadline, because: .stopping, into: &actions)
        }
        foregroundReplacements(into: &actions)  // retiring: exit at full priority
        if workers.isEmpty {
            lifecycle = .finished
            actions.log(.stopped(status: exitStatus.rawValue))
            actions.append(.exit(exitStatus.rawValue))
        }
    }
}
