/// Reconciliation: compare what is wanted (the plan, the generation) with what
/// is observed (the worker table) and order what closes the gap. It runs after
/// every event, so each decision is made in exactly one place.
extension SupervisorCore {
    var wantsScheduler: Bool { plan.scheduler && !isStopping && leasePermits }
    var schedulerExists: Bool { hasScheduler }

    /// The worker of the current generation that holds `slot`, if any. Slot 0
    /// may hold two for a while: a stand-in (role `worker`) that serves while
    /// the scheduler boots beside it; the scheduler is the one that stays.
    func current(in slot: Int) -> Worker? {
        let holders = workers.lazy.filter {
            $0.slot == slot && $0.generation == generation && !$0.isRetiring && !$0.appGone
        }
        return holders.first { $0.role == .scheduler } ?? holders.first
    }

    /// `slot` still wants a process: it has no worker of the current
    /// generation, or it is the scheduler's slot and only a stand-in serves it.
    func lacksWorker(_ slot: Int) -> Bool {
        guard let holder = current(in: slot) else { return true }
        return slot == Self.schedulerSlot && wantsScheduler && holder.role != .scheduler
    }

    /// A ready worker of the current generation, not retiring, serves `slot`
    /// (a stand-in counts): an older worker of the slot may go.
    func isServed(_ slot: Int) -> Bool {
        workers.contains { $0.slot == slot && $0.generation == generation && $0.ready && !$0.isRetiring && !$0.appGone }
    }

    /// A worker of `slot` whose app is gone while its guard drains the tree.
    func isDraining(_ slot: Int) -> Bool { workers.contains { $0.slot == slot && $0.appGone } }

    /// A scheduler of an older generation still serves, waiting for a ready
    /// worker of the current generation in its slot before it is retired.
    var schedulerAwaitsRelief: Bool {
        workers.contains { $0.role == .scheduler && $0.generation != generation && !$0.isRetiring }
    }

    mutating func reconcile(at now: Instant, into actions: inout [Action]) {
        enforceDeadlines(at: now, into: &actions)
        if !isStopping { watchReadiness(at: now, into: &actions) }  // a failed start begins a stop
        defer { updateSchedulerSocket(at: now) }
        if isStopping {
            for index in workers.indices where workers[index].pid != nil && !workers[index].isRetiring {
                retire(at: index, deadline: stopDeadline!, reason: "stopping", into: &actions)
            }
            foregroundReplacements(into: &actions)  // retiring: exit at full priority
            if workers.isEmpty {
                finished = true
                let status = exitStatus.rawValue
                actions.append(.log(LogRecord(.info, "stopped", "all workers are gone; exiting"
                    + (status == 0 ? "" : " with status \(status)"), [.init("status", .int(Int(status)))])))
                actions.append(.exit(status))
            }
            return
        }
        retireObsolete(at: now, into: &actions)
        manageToken(at: now, into: &actions)
        spawnMissing(at: now, into: &actions)
        foregroundReplacements(into: &actions)
        noteGenerationReady(at: now, into: &actions)
        enforceDeadlines(at: now, into: &actions)  // a zero graceful timeout is due at once
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

    /// Boot grace (exec readiness), ready timeout and watchdog. A ready
    /// timeout of the current generation abandons a reload; before any worker
    /// was ever ready, it is a failed start.
    mutating func watchReadiness(at now: Instant, into actions: inout [Action]) {
        var abandon: String?
        var failedStart: (reason: String, slot: Int)?
        for index in workers.indices {
            let worker = workers[index]
            guard let pid = worker.pid, !worker.killed else { continue }
            if !worker.ready && !plan.notifyReadiness && now >= worker.startedAt + timings.bootGrace {
                workers[index].ready = true
                someWorkerWasReady = true
            }
            if !workers[index].ready && !worker.isRetiring && now >= worker.startedAt + plan.readyTimeout {
                workers[index].killed = true
                workers[index].failed = true
                actions.append(.killGroup(pid: pid))
                let reason = "\(worker.role.rawValue) \(worker.slot) (pid \(worker.shownPID ?? pid)) not ready after "
                    + plan.readyTimeout.shortDescription
                actions.append(.log(LogRecord(.warning, "ready_timeout", reason + "; killed", Self.fields(worker))))
                let hint = plan.notifyReadiness && !heardReadyNotification ? Self.neverNotifiedHint(pid: worker.shownPID ?? pid) : nil
                if worker.generation == generation {
                    abandon = reason
                    if failedStart == nil && stableGeneration == nil && !someWorkerWasReady && plan.bootAttempts > 0 {
                        failedStart = ("no worker was ready within " + plan.readyTimeout.shortDescription
                            + " (--ready-timeout)" + (hint.map { ": " + $0 } ?? ""), worker.slot)
                        if hint != nil { notifyHintGiven = true }
                    }
                }
                if let hint, failedStart == nil, !notifyHintGiven {
                    notifyHintGiven = true
                    actions.append(.log(LogRecord(.warning, "never_notified", hint, Self.fields(worker))))
                }
            }
            guard plan.watchdog > .zero, let ping = worker.lastPing else { continue }
            if let aborted = worker.abortedAt {
                if now >= aborted + timings.abortGrace {
                    workers[index].killed = true
                    workers[index].failed = true
                    actions.append(.killGroup(pid: pid))
                }
            } else if now >= ping + plan.watchdog {
                workers[index].abortedAt = now
                actions.append(.signal(pid: pid, .abort))
                actions.append(.log(LogRecord(.warning, "watchdog", "\(worker.role.rawValue) \(worker.slot) (pid \(worker.shownPID ?? pid)) "
                    + "sent no WATCHDOG=1 for \(plan.watchdog.shortDescription); sent SIGABRT", Self.fields(worker))))
            }
        }
        if let failedStart {
            failStart(because: failedStart.reason, slot: failedStart.slot, failedBoots: nil, at: now, into: &actions)
        } else if let abandon {
            abandonReload(at: now, reason: abandon, into: &actions)
        }
    }

    mutating func enforceDeadlines(at now: Instant, into actions: inout [Action]) {
        for index in workers.indices {
            guard let deadline = workers[index].retireDeadline, deadline <= now, !workers[index].killed,
                  let pid = workers[index].pid else { continue }
            workers[index].killed = true
            actions.append(.killGroup(pid: pid))
            actions.append(.log(LogRecord(.warning, "kill", "\(workers[index].role.rawValue) \(workers[index].slot) (pid \(workers[index].shownPID ?? pid)) "
                + "did not exit in time; sent SIGKILL to its process tree", Self.fields(workers[index]))))
        }
    }

    /// Retires what the plan no longer wants. A handover leaves no slot
    /// unserved: an old scheduler that serves goes only once a ready worker
    /// of the current generation serves its slot (the stand-in, or with
    /// `--no-scheduler` an ordinary worker), and a stand-in only once the
    /// scheduler beside it is ready. A withdrawn lease does not wait.
    mutating func retireObsolete(at now: Instant, into actions: inout [Action]) {
        let deadline = now + plan.gracefulTimeout
        let scheduler = current(in: Self.schedulerSlot)
        let schedulerReady = wantsScheduler && scheduler?.role == .scheduler && scheduler?.ready == true
        for index in workers.indices {
            let worker = workers[index]
            guard worker.pid != nil, !worker.isRetiring else { continue }
            let removedSlot = worker.slot >= plan.workers
            let oldGeneration = worker.generation != generation
            var reason: String?
            var retireBy = deadline
            if worker.role == .scheduler {
                if !leasePermits {
                    reason = "the lease was withdrawn"
                    retireBy = min(deadline, now + timings.leaseGrace)
                } else if removedSlot || oldGeneration || !plan.scheduler {
                    let serves = worker.ready && oldGeneration && !removedSlot
                    if !serves || isServed(worker.slot) { reason = "scheduler handover" }
                }
            } else if removedSlot {
                reason = "slot removed"
            } else if oldGeneration {
                if isServed(worker.slot) { reason = "replaced by generation \(generation)" }
            } else if schedulerReady && worker.slot == Self.schedulerSlot {
                reason = "replaced by the scheduler"
            }
            if let reason { retire(at: index, deadline: retireBy, reason: reason, into: &actions) }
        }
    }

    mutating func retire(at index: Int, deadline: Instant, reason: String, into actions: inout [Action]) {
        guard let pid = workers[index].pid else { return }
        workers[index].retireDeadline = deadline
        actions.append(.signal(pid: pid, .terminate))
        actions.append(.log(LogRecord(.info, "retiring", "retiring \(workers[index].role.rawValue) \(workers[index].slot) (pid \(workers[index].shownPID ?? pid)): \(reason)",
                                      Self.fields(workers[index]) + [.init("reason", .string(reason))])))
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

    /// Orders the processes the slots lack. The scheduler's slot is never
    /// left unserved by a handover: while an old scheduler serves, the new
    /// generation's slot 0 first gets a stand-in (role `worker`); the old
    /// scheduler goes once the stand-in is ready, and the new scheduler is
    /// spawned beside the stand-in once the old one is reaped and the token
    /// held. A scheduler that died is replaced at once when the token is
    /// free (a stand-in would boot no sooner); with the token busy, the slot
    /// runs an ordinary worker after `tokenWaitGrace`. A first start has
    /// nothing serving to bridge, and no stand-in.
    mutating func spawnMissing(at now: Instant, into actions: inout [Action]) {
        // A reload replaces serving workers one batch at a time: a slot whose
        // old worker still serves waits while `reloadBatch` replacements boot,
        // so that booting a generation does not starve the one serving. The
        // scheduler's slot is handed over outside the batch (its stand-in,
        // then the scheduler), so the stand-in makes a reload no longer.
        let rolling = stableGeneration != nil && generation != stableGeneration
        let handover = wantsScheduler ? Self.schedulerSlot : nil
        var booting = workers.filter {
            $0.generation == generation && !$0.ready && !$0.isRetiring && $0.slot != handover
        }.count
        for slot in 0..<plan.workers where lacksWorker(slot) {
            if let notBefore = slots[slot]?.notBefore, notBefore > now { continue }
            let stillServed = workers.contains { $0.slot == slot && $0.generation != generation && !$0.isRetiring }
            if rolling && stillServed && slot != handover && booting >= timings.reloadBatch { continue }
            // A worker's slot is filled again once its old tree is gone; the
            // scheduler's gets a stand-in meanwhile (below).
            if slot != handover && isDraining(slot) { continue }
            var role = Role.worker
            if slot == handover {
                if token == .held && !schedulerExists {
                    role = .scheduler  // beside the stand-in, if one serves
                } else if current(in: slot) != nil || token == .acquiring {
                    continue  // the stand-in serves on; or the token's answer comes this turn
                } else if schedulerExists && !schedulerAwaitsRelief && !isDraining(slot) {
                    continue  // the old scheduler is on its way out; its successor follows the reap
                } else if !schedulerExists, let wait = tokenWait, now < wait.since + timings.tokenWaitGrace {
                    continue  // keep the slot free a moment for a token about to be freed
                }
            }
            let order = SpawnOrder(ref: WorkerRef(nextSerial), slot: slot, role: role,
                                   generation: generation, workersCount: plan.workers,
                                   background: rolling && servedByOlder(slot, than: generation)
                                    && role != .scheduler)
            nextSerial += 1
            workers.append(Worker(ref: order.ref, slot: slot, generation: generation, role: role,
                                  pid: nil, startedAt: now, background: order.background))
            actions.append(.spawn(order))
            if slot == handover && role == .worker && schedulerExists {
                actions.append(.log(LogRecord(.info, "stand_in", "worker \(slot) stands in for the scheduler while "
                    + "it is handed over", [.init("slot", .int(slot)), .init("generation", .int(generation))])))
            }
            if slot != handover { booting += 1 }
        }
    }

    /// A ready worker of an older generation, not retiring, serves `slot`:
    /// a replacement for it may boot in the background.
    func servedByOlder(_ slot: Int, than generation: Int) -> Bool {
        workers.contains { $0.slot == slot && $0.generation < generation && $0.ready && !$0.isRetiring }
    }

    /// A replacement booting in the background while its slot's old worker
    /// serves comes to the foreground once it is ready, once that old worker
    /// is no longer serving (it died, or the reload was abandoned and it is
    /// all the slot has), or once it is itself retiring (so that it exits
    /// promptly).
    mutating func foregroundReplacements(into actions: inout [Action]) {
        for index in workers.indices where workers[index].background {
            let worker = workers[index]
            guard let pid = worker.pid else { continue }
            guard worker.ready || worker.isRetiring || !servedByOlder(worker.slot, than: worker.generation) else {
                continue
            }
            workers[index].background = false
            actions.append(.foreground(pid: pid))
        }
    }

    /// The current generation is ready once every slot has a ready worker
    /// (and the scheduler runs, unless the token is someone else's): then it
    /// becomes the stable generation, and systemd hears READY=1.
    mutating func noteGenerationReady(at now: Instant, into actions: inout [Action]) {
        guard stableGeneration != generation else { return }
        let ready = (0..<plan.workers).allSatisfy { current(in: $0)?.ready == true }
            && (!wantsScheduler || tokenWait != nil || workers.contains { $0.role == .scheduler && $0.ready
                && $0.generation == generation })
        guard ready else { return }
        let first = stableGeneration == nil
        stableGeneration = generation
        stablePlan = plan
        let status = "\(plan.workers) workers ready, generation \(generation)"
        if first {
            actions.append(.log(LogRecord(.info, "ready", "generation \(generation) is ready: \(plan.workers) workers",
                                          [.init("generation", .int(generation)), .init("workers", .int(plan.workers))])))
        } else if let startedAt = reloadStartedAt {
            actions.append(.log(LogRecord(.info, "reload_finished",
                "reload finished: generation \(generation) in \((now - startedAt).shortDescription)",
                [.init("generation", .int(generation)), .init("seconds", .double((now - startedAt).seconds))])))
        }
        reloadStartedAt = nil
        actions.append(.announce(.ready(status: status)))
    }

    /// The earliest instant at which the core has something to do, or nil
    /// when only an event can change anything (the master then sleeps).
    ///
    /// Deadlines up to the last handled event were acted on and are left out
    /// (no busy loop on one that is waiting for something else). A deadline
    /// that passed after that event, while the shell was busy, is kept even
    /// if it is already behind `now`: the shell then ticks at once.
    public func nextDeadline(after now: Instant) -> Instant? {
        var candidates: [Instant] = []
        // A pending SIGKILL is always acted on when due (it sets `killed`), so
        // it is reported even if it was already due at the last event.
        let kills = workers.filter { !$0.killed && $0.pid != nil }.compactMap(\.retireDeadline)
        if !isStopping {
            for slot in 0..<plan.workers where lacksWorker(slot) {
                if let notBefore = slots[slot]?.notBefore { candidates.append(notBefore) }
            }
            if let wait = tokenWait, wantsScheduler, !schedulerExists {
                candidates.append(wait.retryAt)
                candidates.append(wait.since + timings.tokenWaitGrace)
            }
            for worker in workers where worker.pid != nil && !worker.killed {
                if !worker.ready {
                    if !plan.notifyReadiness { candidates.append(worker.startedAt + timings.bootGrace) }
                    if !worker.isRetiring { candidates.append(worker.startedAt + plan.readyTimeout) }
                }
                if plan.watchdog > .zero, let ping = worker.lastPing {
                    candidates.append(worker.abortedAt.map { $0 + timings.abortGrace } ?? ping + plan.watchdog)
                }
            }
        }
        return (candidates.filter { $0 > min(now, lastHandledAt) } + kills).min()
    }
}

extension SupervisorCore {
    static func fields(_ worker: Worker) -> [LogRecord.Field] {
        var fields: [LogRecord.Field] = [
            .init("slot", .int(worker.slot)), .init("role", .string(worker.role.rawValue)),
            .init("generation", .int(worker.generation)),
        ]
        if let pid = worker.shownPID { fields.insert(.init("pid", .int(Int(pid))), at: 0) }
        if let guardPID = worker.pid, worker.appPID != nil { fields.append(.init("guard", .int(Int(guardPID)))) }
        return fields
    }

    static func spawnedRecord(_ worker: Worker, pid: Int32) -> LogRecord {
        LogRecord(.info, "spawned",
                  "spawned \(worker.role.rawValue) \(worker.slot) (guard pid \(pid), generation \(worker.generation))",
                  fields(worker))
    }

    static func exitedRecord(_ worker: Worker, status: ExitStatus, at now: Instant) -> LogRecord {
        let who = worker.shownPID.map { "pid \($0)" } ?? "no pid"
        let uptime = now - worker.startedAt
        var fields = fields(worker) + [.init("uptime", .double(uptime.seconds))]
        let level: LogRecord.Level
        switch status {
        case .exited(let code):
            fields.append(.init("status", .int(Int(code))))
            level = code == 0 || worker.isRetiring ? .info : .warning
        case .signaled(let signal, let core):
            fields.append(.init("signal", .string(signal.description)))
            if core { fields.append(.init("core_dumped", .bool(true))) }
            level = worker.isRetiring ? .info : .warning
        }
        return LogRecord(level, "exited",
                         "\(worker.role.rawValue) \(worker.slot) (\(who)) exited with \(status) "
                             + "after \(uptime.shortDescription)", fields)
    }

    static func resizedRecord(_ workers: Int) -> LogRecord {
        LogRecord(.info, "resized", "worker count is now \(workers)", [.init("workers", .int(workers))])
    }
}
