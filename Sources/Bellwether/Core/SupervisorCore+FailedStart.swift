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
    /// `ExitCode.failedStart`. `failedBoots`: when the slot's failed boots
    /// are the cause (rather than the ready timeout).
    mutating func failStart(because reason: String, slot: Int, failedBoots: Int?, at now: Instant,
                            into actions: inout [Action]) {
        guard stableGeneration == nil, !isStopping else { return }
        exitStatus = .failedStart
        var fields: [LogRecord.Field] = [.init("slot", .int(slot)), .init("reason", .string(reason)),
                                         .init("status", .int(Int(ExitCode.failedStart.rawValue)))]
        if let failedBoots { fields.append(.init("failed_boots", .int(failedBoots))) }
        actions.append(.log(LogRecord(.error, "failed_start",
            "failed start: \(reason); stopping, exit status \(ExitCode.failedStart.rawValue)", fields)))
        beginStop(quick: false, at: now, into: &actions)
    }

    /// What a ready timeout under `--ready notify` suggests when no worker
    /// has ever sent READY=1: logged once per master.
    static func neverNotifiedHint(pid: Int32) -> String {
        "pid \(pid) never sent READY=1; does the app support sd_notify? use --ready exec"
    }

    /// When a slot that is backing off (no worker of the current generation,
    /// waiting for its next start) will be tried again, or nil.
    public func nextAttempt(of slot: Int, at now: Instant) -> Instant? {
        guard !isStopping, slot < plan.workers, current(in: slot) == nil,
              let notBefore = slots[slot]?.notBefore, notBefore > now else { return nil }
        return notBefore
    }
}
