/// The scheduler token: the master takes it when a scheduler is wanted and
/// none is left, passes it to the scheduler it spawns, and waits with
/// back-off while someone else holds it. The `--scheduler-bind` socket is
/// wanted while this master designates the scheduler.
extension SupervisorCore {
    mutating func acceptToken(_ answer: TokenAnswer, at now: Instant, into actions: inout [Action]) {
        switch answer {
        case .acquired:
            token = .held
            if let wait = tokenWait { actions.log(.tokenAcquired(waited: now - wait.since)) }
            tokenWait = nil
        case .busy, .stray:
            token = .notHeld
            var wait = tokenWait ?? TokenWait(since: now, retryAt: now, attempts: 0)
            if tokenWait == nil, case .busy(let holder) = answer {
                actions.log(.tokenBusy(holder: holder))
            } else if tokenWait == nil, case .stray(let pid) = answer {
                actions.log(.tokenStray(pid: pid))
            }
            wait.attempts += 1
            wait.retryAt = now + Backoff.tokenRetry(attempt: wait.attempts, timings: timings)
            tokenWait = wait
        }
    }

    mutating func manageToken(at now: Instant, into actions: inout [Action]) {
        if !wantsScheduler {
            if token == .held {
                token = .notHeld
                actions.append(.releaseToken)
            }
            tokenWait = nil
            return
        }
        guard token == .notHeld, !schedulerExists else { return }
        if let wait = tokenWait, wait.retryAt > now { return }
        token = .acquiring
        actions.append(.acquireToken)
    }

    /// The scheduler socket is wanted from taking the token until this
    /// master gives the role up, across scheduler replacements (a handover
    /// refuses no connection), and through a moment's wait for a straggler of
    /// its own; not once another holder is established (the token busy past
    /// `tokenWaitGrace`), nor when stopping, without a scheduler or without
    /// the lease — so a balancer's retry finds the master that designates.
    mutating func updateSchedulerSocket(at now: Instant) {
        if !wantsScheduler {
            schedulerSocketWanted = false
        } else if token == .held || hasScheduler {
            schedulerSocketWanted = true
        } else if let wait = tokenWait, now >= wait.since + timings.tokenWaitGrace {
            schedulerSocketWanted = false
        }
    }
}
