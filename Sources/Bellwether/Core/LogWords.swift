/// Every word the supervisor and its lease say in the log: each lifecycle
/// event (`SupervisorCore.Happening`, `LeaseCore.Happening`) becomes one
/// `LogRecord` here — its level, event name, sentence and JSON fields — and
/// nowhere else. The reasons that other sentences quote (why a worker
/// retires, why a reload or a start failed) are worded here too.
///
/// Users and tests read these words: change them only on purpose.
extension SupervisorCore.Happening {
    typealias Worker = SupervisorCore.Worker

    var record: LogRecord {
        switch self {
        case .spawned(let worker, let pid):
            LogRecord(.info, "spawned",
                      "spawned \(worker.role.rawValue) \(worker.slot) (guard pid \(pid), generation \(worker.generation))",
                      Self.fields(worker))
        case .spawnFailed(let worker, let reason):
            LogRecord(.error, "spawn_failed", "could not spawn worker \(worker.slot): \(reason)",
                      Self.fields(worker) + [.init("reason", .string(reason))])
        case .exited(let worker, let status, let uptime):
            Self.exited(worker, status, uptime: uptime)
        case .appExited(let worker):
            LogRecord(.info, "app_exited", "\(Self.named(worker)) exited; its guard ends what it left behind",
                      Self.fields(worker))
        case .ready(let worker):
            LogRecord(.info, "ready", "\(Self.named(worker)) is ready", Self.fields(worker))
        case .readyTimeout(let worker, let timeout):
            LogRecord(.warning, "ready_timeout", Self.notReady(worker, after: timeout) + "; killed", Self.fields(worker))
        case .neverNotified(let worker):
            LogRecord(.warning, "never_notified", Self.neverNotified(worker), Self.fields(worker))
        case .watchdogAbort(let worker, let silence):
            LogRecord(.warning, "watchdog", "\(Self.named(worker)) sent no WATCHDOG=1 for \(silence.shortDescription); "
                + "sent SIGABRT", Self.fields(worker))
        case .kill(let worker):
            LogRecord(.warning, "kill", "\(Self.named(worker)) did not exit in time; sent SIGKILL to its process tree",
                      Self.fields(worker))
        case .retiring(let worker, let why):
            LogRecord(.info, "retiring", "retiring \(Self.named(worker)): \(why.words)",
                      Self.fields(worker) + [.init("reason", .string(why.words))])
        case .memoryLimitTooLow(let worker, let bytes, let limit):
            LogRecord(.warning, "memory_limit_too_low",
                      "\(Self.named(worker)) uses \(bytes / 1_048_576) MiB at its first measurement, over "
                      + "--max-worker-memory \(limit / 1_048_576) MiB: fresh workers are bigger than the limit, "
                      + "so every worker will be recycled at every measurement",
                      Self.fields(worker) + [.init("bytes", .int(bytes)), .init("limit", .int(limit))])
        case .recycling(let worker, let why):
            LogRecord(.info, "recycling", "recycling \(Self.named(worker)): \(why.words); its replacement boots first",
                      Self.fields(worker) + [.init("reason", .string(why.words))])
        case .standIn(let slot, let generation):
            LogRecord(.info, "stand_in", "worker \(slot) stands in for the scheduler while it is handed over",
                      [.init("slot", .int(slot)), .init("generation", .int(generation))])
        case .backoff(let slot, let failures, let within, let delay):
            LogRecord(.warning, "backoff", "worker \(slot) died \(failures) times in a row within "
                + "\(within.shortDescription) of starting; next start in \(delay.shortDescription)",
                [.init("slot", .int(slot)), .init("failures", .int(failures)), .init("delay", .double(delay.seconds))])
        case .generationReady(let generation, let workers):
            LogRecord(.info, "ready", "generation \(generation) is ready: \(workers) workers",
                      [.init("generation", .int(generation)), .init("workers", .int(workers))])
        case .reloadStarted(let generation, let workers):
            LogRecord(.info, "reload_started", "reload started: generation \(generation), \(workers) workers",
                      [.init("generation", .int(generation)), .init("workers", .int(workers))])
        case .reloadFinished(let generation, let took):
            LogRecord(.info, "reload_finished", "reload finished: generation \(generation) in \(took.shortDescription)",
                      [.init("generation", .int(generation)), .init("seconds", .double(took.seconds))])
        case .reloadFailed(let generation, let serving, let setback):
            LogRecord(.error, "reload_failed",
                      "reload to generation \(generation) failed: \(setback.words); generation \(serving) keeps serving",
                      [.init("generation", .int(generation)), .init("serving", .int(serving)),
                       .init("reason", .string(setback.words))])
        case .failedStart(let slot, let cause):
            Self.failedStart(slot: slot, cause)
        case .resized(let workers):
            LogRecord(.info, "resized", "worker count is now \(workers)", [.init("workers", .int(workers))])
        case .resizeRefused:
            LogRecord(.warning, "resize_refused", "TTOU ignored: already at 1 worker")
        case .stopping(let quick, let workers, let grace):
            LogRecord(.info, "stopping",
                      (quick ? "quick stop" : "graceful stop") + ": \(workers) workers, SIGKILL after \(grace.shortDescription)",
                      [.init("quick", .bool(quick)), .init("grace", .double(grace.seconds))])
        case .stopped(let status):
            LogRecord(.info, "stopped", "all workers are gone; exiting" + (status == 0 ? "" : " with status \(status)"),
                      [.init("status", .int(Int(status)))])
        case .tokenAcquired(let waited):
            LogRecord(.info, "token_acquired", "scheduler token acquired after waiting \(waited.shortDescription)",
                      [.init("waited", .double(waited.seconds))])
        case .tokenBusy(let holder):
            LogRecord(.warning, "token_busy", "scheduler token is held by "
                + (holder.map { "pid \($0)" } ?? "another process") + "; no scheduler until it is released",
                holder.map { [.init("holder", .int(Int($0)))] } ?? [])
        case .tokenStray(let pid):
            LogRecord(.warning, "token_busy", "pid \(pid), left of a worker whose guard died, is still being killed; "
                + "no scheduler until it is gone", [.init("stray", .int(Int(pid)))])
        }
    }

    /// "scheduler 0 (pid 4242)": a worker with a process, as sentences name it.
    static func named(_ worker: Worker) -> String {
        "\(worker.role.rawValue) \(worker.slot) (pid \(worker.shownPID ?? 0))"
    }

    static func notReady(_ worker: Worker, after timeout: Duration) -> String {
        "\(named(worker)) not ready after \(timeout.shortDescription)"
    }

    static func neverNotified(_ worker: Worker) -> String {
        "pid \(worker.shownPID ?? 0) never sent READY=1; does the app support sd_notify? use --ready exec"
    }

    /// What every record about one worker carries.
    static func fields(_ worker: Worker) -> [LogRecord.Field] {
        var fields: [LogRecord.Field] = [
            .init("slot", .int(worker.slot)), .init("role", .string(worker.role.rawValue)),
            .init("generation", .int(worker.generation)),
        ]
        if let pid = worker.shownPID { fields.insert(.init("pid", .int(Int(pid))), at: 0) }
        if let guardPID = worker.pid, worker.appPID != nil { fields.append(.init("guard", .int(Int(guardPID)))) }
        return fields
    }

    /// A death nobody asked for is a warning; one asked for, or a clean exit, is not.
    static func exited(_ worker: Worker, _ status: ExitStatus, uptime: Duration) -> LogRecord {
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
        let who = worker.shownPID.map { "pid \($0)" } ?? "no pid"
        return LogRecord(level, "exited", "\(worker.role.rawValue) \(worker.slot) (\(who)) exited with \(status) "
            + "after \(uptime.shortDescription)", fields)
    }

    static func failedStart(slot: Int, _ cause: SupervisorCore.FailedStart) -> LogRecord {
        let status = ExitCode.failedStart.rawValue
        var fields: [LogRecord.Field] = [.init("slot", .int(slot)), .init("reason", .string(cause.words)),
                                         .init("status", .int(Int(status)))]
        if case .failedBoots(_, let count, _) = cause { fields.append(.init("failed_boots", .int(count))) }
        return LogRecord(.error, "failed_start", "failed start: \(cause.words); stopping, exit status \(status)", fields)
    }
}

extension SupervisorCore.Retirement {
    var words: String {
        switch self {
        case .stopping: "stopping"
        case .leaseWithdrawn: "the lease was withdrawn"
        case .schedulerHandover: "scheduler handover"
        case .slotRemoved: "slot removed"
        case .replaced(let generation): "replaced by generation \(generation)"
        case .replacedByScheduler: "replaced by the scheduler"
        case .recycled: "recycled, its replacement is ready"
        }
    }
}

extension SupervisorCore.Worker.Recycling {
    var words: String {
        switch self {
        case .age(let limit): "older than \(limit.shortDescription) (--max-worker-age)"
        case .memory(let bytes, let limit):
            "its processes use \(bytes / 1_048_576) MiB, over --max-worker-memory \(limit / 1_048_576) MiB"
        case .asked: "the app asked (X_BELLWETHER_RECYCLE=1)"
        }
    }
}

extension SupervisorCore.Setback {
    var words: String {
        switch self {
        case .exitedBeforeReady(let worker, let status):
            "\(worker.role.rawValue) \(worker.slot) exited with \(status) before it was ready"
        case .notReady(let worker, let timeout):
            SupervisorCore.Happening.notReady(worker, after: timeout)
        case .notForked(let worker, let reason):
            "\(worker.role.rawValue) \(worker.slot) could not be forked: \(reason)"
        }
    }
}

extension SupervisorCore.FailedStart {
    var words: String {
        switch self {
        case .failedBoots(let worker, let count, let last):
            "\(worker.role.rawValue) \(worker.slot) failed to boot \(count) times in a row "
                + "(last: \(last?.description ?? "unknown"))"
        case .noneReady(let timeout, let silent):
            "no worker was ready within \(timeout.shortDescription) (--ready-timeout)"
                + (silent.map { ": " + SupervisorCore.Happening.neverNotified($0) } ?? "")
        }
    }
}

extension LeaseCore.Happening {
    var record: LogRecord {
        switch self {
        case .reachable(let silence):
            LogRecord(.info, "lease_reachable", "lease: the store answers again after \(silence.shortDescription)")
        case .acquired(let fence, let clean, let delay):
            LogRecord(.info, "lease_acquired", "lease acquired with fence \(fence); "
                + (clean ? "the previous holder released cleanly: designating a scheduler now"
                    : "waiting \(delay.shortDescription) (takeover delay) before designating a scheduler"),
                [.init("fence", .int(Int(fence))), .init("clean", .bool(clean))])
        case .heldBy(let value):
            LogRecord(.info, "lease_held", "lease held by \(value); no scheduler here", [.init("holder", .string(value))])
        case .renewedLate(let gap, let stepDownAfter, let fence):
            LogRecord(.warning, "lease_renewed_late", "lease renewed late: \(gap.shortDescription) since the last "
                + "renewal that counted (step-down after \(stepDownAfter.shortDescription))",
                [.init("gap", .double(gap.seconds)), .init("fence", .int(Int(fence)))])
        case .released(let clean):
            LogRecord(.info, "lease_released", clean ? "lease released (the next holder starts at once)"
                : "lease was no longer ours at release")
        case .unreachable(let reason, let rejected, let retryEvery, let stepDownAfter, let fence):
            LogRecord(rejected ? .error : .warning, rejected ? "lease_rejected" : "lease_unreachable",
                      "lease: \(reason); retrying every \(retryEvery.shortDescription); "
                + (fence.map { "stepping down at \(stepDownAfter.shortDescription) without a renewal (fence \($0))" }
                    ?? "no scheduler here until the lease is acquired"),
                [.init("reason", .string(reason))])
        case .stepDown(let why, let fence, let stopping):
            LogRecord(stopping ? .info : .error, "lease_step_down",
                      "\(why.words): stepping down, no scheduler here (fence \(fence))",
                      [.init("fence", .int(Int(fence))), .init("reason", .string(why.words))])
        case .granted(let fence):
            LogRecord(.info, "lease_granted", "lease held with fence \(fence): designating a scheduler",
                      [.init("fence", .int(Int(fence)))])
        }
    }
}

extension LeaseCore.StepDown {
    var words: String {
        switch self {
        case .notWanted: "no scheduler is wanted here (no-scheduler)"
        case .stopping: "stopping"
        case .lost(let current): "lease lost: " + (current.map { "the key now holds \($0)" } ?? "the key is gone")
        case .noRenewal(let silence): "no renewal counted for \(silence.shortDescription)"
        }
    }
}

extension MasterHappening {
    var record: LogRecord {
        switch self {
        case .starting(let workers, let token, let tokenPath, let command):
            LogRecord(.info, "starting", "bellwether \(Version.current) starting: \(workers) workers, "
                + (token.map { "scheduler token \($0)" } ?? "no scheduler") + ", command \(command)",
                [.init("workers", .int(workers)), .init("token", .string(tokenPath)), .init("command", .string(command))])
        case .lease(let address, let holder):
            LogRecord(.info, "lease", "lease \(address) as \(holder); no scheduler until it is acquired",
                      [.init("holder", .string(holder))])
        case .foreignProc:
            LogRecord(.warning, "foreign_proc", "/proc shows another PID namespace than this process's; what a "
                + "worker whose guard is killed leaves behind cannot be found (give the namespace a /proc of its "
                + "own: unshare --mount-proc, as container runtimes do)")
        case .workerStatus(let pid, let status):
            LogRecord(.info, "worker_status", "pid \(pid): \(status)",
                      [.init("pid", .int(Int(pid))), .init("status", .string(status))])
        case .workerOutput(let slot, let role, let pid, let stream, let line):
            // A fork server's line has no slot.
            LogRecord(.info, "worker_output", line, (slot.map { [LogRecord.Field("slot", .int($0))] } ?? [])
                + [.init("role", .string(role)), .init("pid", .int(Int(pid))), .init("stream", .string(stream))])
        case .workerStopping(let pid):
            LogRecord(.info, "worker_stopping", "pid \(pid) is stopping", [.init("pid", .int(Int(pid)))])
        case .stray(let pid):
            LogRecord(.warning, "stray", "pid \(pid) was left behind by a worker whose guard died; "
                + "sent SIGKILL to it and its process group", [.init("pid", .int(Int(pid)))])
        case .acceptFailed(let socket, let code, let error, let pause):
            LogRecord(.error, socket == "control socket" ? "control_accept_failed" : "metrics_accept_failed",
                      "\(socket): cannot accept a connection: \(error); pausing \(pause.shortDescription)",
                      [.init("errno", .int(Int(code)))])
        case .reloadConfigRejected(let reason):
            LogRecord(.error, "reload_config_rejected", "reload: \(reason); keeping the current configuration",
                      [.init("error", .string(reason))])
        case .reloadNiceOff(let pid, let error):
            LogRecord(.warning, "reload_nice", "cannot give worker pid \(pid) its priority back "
                + "(\(error)); --reload-nice is off from now on")
        case .forkServerStarted(let generation, let pid, let modules):
            LogRecord(.info, "fork_server", "fork server of generation \(generation) started (pid \(pid)), "
                + (modules.isEmpty ? "preloading the app's entry point only" : "preloading " + modules.joined(separator: ", ")),
                [.init("generation", .int(generation)), .init("pid", .int(Int(pid)))])
        case .forkServerExited(let generation, let pid, let status, let failedOrders):
            LogRecord(failedOrders > 0 ? .error : .warning, "fork_server_exited",
                      "fork server of generation \(generation) (pid \(pid)) ended: \(status)"
                + (failedOrders > 0 ? "; \(failedOrders) worker(s) it had not forked yet count as failed boots" : ""),
                [.init("generation", .int(generation)), .init("pid", .int(Int(pid))),
                 .init("failed_orders", .int(failedOrders))])
        case .noASLR(let error):
            LogRecord(.warning, "no_aslr", "cannot change the personality for --no-aslr "
                + "(\(error)); workers start with the inherited one")
        case .schedulerBindFailed(let reason):
            LogRecord(.error, "scheduler_bind", reason)
        case .schedulerUnbound(let address):
            LogRecord(.info, "scheduler_unbound", "closed the scheduler socket \(address)")
        case .listening(let address, let name, let scheduler):
            LogRecord(.info, "listening", "listening on \(address)" + (scheduler ? " (scheduler)" : ""),
                      [.init("address", .string(address)), .init("name", .string(name))])
        case .metricsListening(let address):
            LogRecord(.info, "metrics_listening", "metrics on \(address)", [.init("address", .string(address))])
        case .tokenError(let path, let reason):
            LogRecord(.error, "token_error", "scheduler token \(path): \(reason)")
        case .watching(let paths, let directories, let debounce):
            LogRecord(.info, "watching", "watching \(paths.joined(separator: ", ")) (\(directories) directories): "
                + "a change reloads \(debounce.shortDescription) after the last one",
                      [.init("paths", .string(paths.joined(separator: ":"))), .init("directories", .int(directories))])
        case .watchLimit(let path, let watched):
            LogRecord(.warning, "watch_limit", "cannot watch \(path) and what is left: fs.inotify.max_user_watches "
                + "reached after \(watched) watches; changes there will not reload (raise it with sysctl)",
                      [.init("path", .string(path)), .init("watched", .int(watched))])
        case .watchFailed(let path, let error):
            LogRecord(.warning, "watch_failed", "cannot watch \(path): \(error); changes there will not reload",
                      [.init("path", .string(path))])
        case .watchChange(let path, let count):
            LogRecord(.info, "watch_change", "changed: \(path)" + (count > 1 ? " and \(count - 1) more" : "")
                + "; reloading", [.init("path", .string(path)), .init("changes", .int(count))])
        }
    }
}
