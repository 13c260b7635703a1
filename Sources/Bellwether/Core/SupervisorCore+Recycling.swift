/// Recycling: a worker that has run too long, uses too much memory, or
/// whose app asks for it is replaced the way a reload replaces it — its
/// replacement boots first, and it retires only once that one is ready (the
/// scheduler through the stand-in handover, so two never overlap). One slot
/// at a time, and never during a reload or a stop: a recycle that waits its
/// turn keeps its reason.
extension SupervisorCore {
    /// The worker being recycled, if one is and has not retired yet.
    var recyclingInProgress: Bool { workers.contains { $0.isRecycling } }

    /// Whether recycling may start now: running, no reload under way, and
    /// the last recycling (or scheduler handover) over — every slot served by
    /// a ready worker of this generation, the scheduler's slot by the
    /// scheduler itself, and no tree beside the N serving ones (a stand-in, a
    /// worker still draining) — so that at most one extra tree boots or
    /// drains at any moment.
    var mayRecycle: Bool {
        !isStopping && stableGeneration == generation && !recyclingInProgress && everySlotReady
            && workers.count == plan.workers
    }

    /// When a worker started at `since` passes the age limit: its share of the
    /// jitter is drawn from its serial, so that the core stays a function of
    /// its events and the workers of one start spread out.
    func ageLimit(of worker: Worker) -> Duration? {
        guard plan.maxWorkerAge > .zero else { return nil }
        var mixed = worker.ref.serial &+ 0x9e37_79b9_7f4a_7c15
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        mixed ^= mixed >> 31
        let share = Double(mixed >> 11) / Double(1 << 53)
        return plan.maxWorkerAge + plan.maxWorkerAgeJitter * share
    }

    /// Why `worker` should be recycled now, if it should.
    func recycleReason(_ worker: Worker, at now: Instant) -> Worker.Recycling? {
        guard case .running(let process) = worker.phase, process.ready, !process.appGone,
              worker.generation == generation, worker.slot < plan.workers else { return nil }
        if let wanted = process.recycleWanted { return wanted }
        if let limit = ageLimit(of: worker), now >= process.since + limit { return .age(plan.maxWorkerAge) }
        return nil
    }

    mutating func startRecycling(at now: Instant, into actions: inout [Action]) {
        guard mayRecycle else { return }
        // The app's own request first, then memory, then age; the oldest first.
        let candidates = workers.indices.compactMap { index in
            recycleReason(workers[index], at: now).map { (index, $0, workers[index].process?.since ?? now) }
        }
        func rank(_ reason: Worker.Recycling) -> Int {
            switch reason { case .asked: 0; case .memory: 1; case .age: 2 }
        }
        guard let (index, reason, _) = candidates.min(by: { (rank($0.1), $0.2) < (rank($1.1), $1.2) }) else { return }
        workers[index].process?.recycling = reason
        workers[index].process?.recycleWanted = nil
        history[workers[index].slot, default: SlotHistory()].recycled[reason.kind, default: 0] += 1
        actions.log(.recycling(workers[index], reason))
    }

    /// The instants at which a worker passes its age limit, while recycling
    /// may start (an age that passes meanwhile is acted on at the next event).
    var recyclingDeadlines: [Instant] {
        guard plan.maxWorkerAge > .zero, mayRecycle else { return [] }
        return workers.compactMap { worker in
            guard case .running(let process) = worker.phase, process.ready, worker.generation == generation,
                  let limit = ageLimit(of: worker) else { return nil }
            return process.since + limit
        }
    }
}
