/// What a worker's death, or a generation that cannot become ready,
/// changes: back-off and failed boots for its slot, and the abandoning of a
/// reload. (A failed first start is in `SupervisorCore+FailedStart.swift`.)
extension SupervisorCore {
    /// Book-keeping after a worker is gone: back-off for a current worker that
    /// died on its own, nothing for one that was retired or stopped.
    ///
    /// A worker that ran and died before it was ready is a failed boot of its
    /// slot; a spawn that failed is not (running out of processes passes, an
    /// app that cannot import stays), unless a fork server failed to fork it
    /// (`failedBoot`: the generation's preload cannot serve). Before any generation was ready,
    /// `plan.bootAttempts` of them in a row are a failed start. `ending`: how
    /// it ended, for the log.
    mutating func noteDeath(of worker: Worker, ending: ExitStatus? = nil, failedBoot: Bool = false, at now: Instant,
                            into actions: inout [Action]) {
        guard !isStopping, worker.diedUnasked, worker.generation == generation,
              worker.slot < plan.workers else { return }
        var health = slots[worker.slot] ?? SlotHealth()
        let booted = worker.pid != nil || failedBoot
        let failedBoots = worker.ready ? 0 : health.failedBoots + (booted ? 1 : 0)
        if stableGeneration == nil, booted, plan.bootAttempts > 0, failedBoots >= plan.bootAttempts {
            failStart(because: .failedBoots(worker, count: failedBoots, last: ending), slot: worker.slot,
                      at: now, into: &actions)
            return
        }
        if now - worker.startedAt >= timings.stableUptime {
            health = SlotHealth()
        } else {
            health.quickDeaths += 1
            let delay = Backoff.delay(afterQuickDeaths: health.quickDeaths, timings: timings)
            health.notBefore = now + delay
            if delay > .zero {
                actions.log(.backoff(slot: worker.slot, failures: health.quickDeaths, within: timings.stableUptime,
                                     delay: delay))
            }
        }
        health.failedBoots = failedBoots  // kept past a long boot, which resets the back-off
        slots[worker.slot] = health
    }

    /// A reload whose new generation cannot become ready is abandoned: the
    /// last stable generation becomes current again and keeps serving (its
    /// workers were retired only as their replacements became ready).
    mutating func abandonReload(at now: Instant, because setback: Setback, into actions: inout [Action]) {
        guard let stable = stableGeneration, generation != stable, !isStopping else { return }
        let record = Happening.reloadFailed(generation: generation, serving: stable, because: setback).record
        generation = stable
        if let stablePlan { plan = stablePlan }
        slots = [:]
        tallyReloadEnd(finished: false, at: now)
        reloadStartedAt = nil
        actions.append(.log(record))
        actions.append(.announce(.ready(status: record.message)))  // systemd hears the log's words
    }
}
