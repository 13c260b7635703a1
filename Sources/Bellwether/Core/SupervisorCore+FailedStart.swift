/// A failed start: a first generation that cannot become ready ends the
/// master, as gunicorn's does, so that a service manager restarts it or
/// raises an alert instead of a master that binds a port and never answers.
///
/// It applies only until a generation has been ready once: afterwards a
/// death is restarted with back-off, and a reload that cannot become ready is
/// abandoned while the stable generation serves (`abandonReload`).
extension SupervisorCore {
    /// Whether the master is stopping because its first start failed.
    public var hasFailedToStart: Bool { exitStatus == .failedStart }

    /// Says why in one line and begins a graceful stop whose exit status is
    /// `ExitCode.failedStart`.
    mutating func failStart(because cause: FailedStart, slot: Int, at now: Instant, into actions: inout [Action]) {
        guard stableGeneration == nil, !isStopping else { return }
        exitStatus = .failedStart
        actions.log(.failedStart(slot: slot, because: cause))
        beginStop(quick: false, at: now, into: &actions)
    }

    /// When a slot that is backing off (no worker of the current generation,
    /// waiting for its next start) will be tried again, or nil.
    public func nextAttempt(of slot: Int, at now: Instant) -> Instant? {
        guard !isStopping, slot < plan.workers, current(in: slot) == nil,
              let notBefore = slots[slot]?.notBefore, notBefore > now else { return nil }
        return notBefore
    }
}
