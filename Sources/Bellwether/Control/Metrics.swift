/// What `--metrics-bind` serves at `GET /metrics`: the Prometheus text
/// exposition format, version 0.0.4, built at scrape time from the cores'
/// state and the master's own usage. Nothing here reads the system.
struct MetricsReport {
    /// The scheduler lease or token, as short label values.
    struct Lease: Equatable {
        /// "redis", "postgres" or "file".
        var kind: String
        var state: String
        /// The fence this master holds a Redis lease with; 0 otherwise.
        var fence: Int64
        /// While holding: how long ago the last renewal that counted was sent.
        var renewalAge: Duration? = nil
    }

    /// The master's own resource use (`/proc/self/stat`, `/proc/self/statm`).
    struct Usage: Equatable {
        var cpuSeconds: Double
        var residentBytes: Int
    }

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    var core: SupervisorCore
    var lease: Lease?
    var masterUptime: Duration
    var usage: Usage?
    var now: Instant

    /// The lease of a `Supervision`: its Redis lease if it has one, else the
    /// scheduler token when a scheduler is planned.
    static func lease(of supervision: Supervision, store: String? = nil, at now: Instant) -> Lease? {
        if let lease = supervision.lease {
            let kind = store ?? "redis"
            switch lease.phase {
            case .seeking: return Lease(kind: kind, state: "seeking", fence: 0)
            case .holding(let holding):
                return Lease(kind: kind, state: holding.granted ? "holding" : "takeover_delay", fence: holding.fence,
                             renewalAge: now - holding.lastCounted)
            case .steppingDown: return Lease(kind: kind, state: "stepping_down", fence: 0)
            case .releasing: return Lease(kind: kind, state: "releasing", fence: 0)
            case .stopped: return Lease(kind: kind, state: "released", fence: 0)
            }
        }
        let core = supervision.supervisor
        guard core.plan.scheduler else { return nil }
        let state = switch core.token {
        case .passed: "passed"
        case .held: "held"
        case .acquiring: "acquiring"
        case .notHeld: core.tokenWaitingSince == nil ? "not_held" : "waiting"
        }
        return Lease(kind: "file", state: state, fence: 0)
    }

    /// The state label of a worker: booting until ready, then ready, then
    /// retiring (TERM sent, or its app gone) and killed.
    static func state(of worker: SupervisorCore.Worker) -> String {
        switch worker.phase {
        case .ordered: "booting"
        case .running(let process): process.appGone ? "retiring" : process.ready ? "ready" : "booting"
        case .retiring: "retiring"
        case .killed: "killed"
        }
    }

    var text: String {
        var out = ""
        typealias Sample = (labels: [(String, String)], value: String)
        func family(_ name: String, _ type: String, _ help: String, _ samples: [Sample]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples {
                let labels = sample.labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",")
                out += name + (labels.isEmpty ? "" : "{\(labels)}") + " \(sample.value)\n"
            }
        }
        func one(_ name: String, _ type: String, _ help: String, _ value: String) {
            family(name, type, help, [([], value)])
        }

        let states = ["booting", "ready", "retiring", "killed"]
        family("bellwether_workers", "gauge", "Workers the master has not reaped, by state and role.",
               states.flatMap { state in
                   [Role.scheduler, .worker].map { role in
                       ([("state", state), ("role", role.rawValue)],
                        String(core.workers.count { $0.role == role && Self.state(of: $0) == state }))
                   }
               })
        one("bellwether_workers_configured", "gauge", "The worker count asked for.", String(core.plan.workers))
        one("bellwether_generation", "gauge", "The current generation.", String(core.generation))

        let slots = core.history.keys.sorted()
        family("bellwether_worker_restarts_total", "counter",
               "Workers of a slot that died on their own and were replaced.",
               slots.map { ([("slot", String($0))], String(core.history[$0]!.restarts)) })
        family("bellwether_worker_recyclings_total", "counter",
               "Workers of a slot replaced by recycling (--max-worker-age, --max-worker-memory, the app's request).",
               slots.flatMap { slot in
                   SupervisorCore.Worker.Recycling.Kind.allCases.map { kind in
                       ([("slot", String(slot)), ("reason", kind.rawValue)],
                        String(core.history[slot]!.recycled[kind] ?? 0))
                   }
               })
        family("bellwether_worker_exits_total", "counter", "Workers of a slot that exited, by how they ended.",
               slots.flatMap { slot in
                   core.history[slot]!.exits.map { status, count in
                       let (reason, code) = switch status {
                       case .exited(let code): ("exited", String(code))
                       case .signaled(let signal, _): ("signaled", signal.description)
                       }
                       return ([("slot", String(slot)), ("reason", reason), ("status", code)], String(count))
                   }.sorted { $0.0.map(\.1).joined(separator: " ") < $1.0.map(\.1).joined(separator: " ") }
               })

        let tally = core.tally
        one("bellwether_reloads_total", "counter", "Reloads begun.", String(tally.reloadsStarted))
        family("bellwether_reload_outcomes_total", "counter", "Reloads that ended, by outcome.",
               [([("outcome", "finished")], String(tally.reloadsFinished)),
                ([("outcome", "failed")], String(tally.reloadsFailed))])
        family("bellwether_reload_last_duration_seconds", "gauge",
               "How long the last reload that finished or failed took.",
               tally.lastReloadDuration.map { [([], Self.number($0.seconds))] } ?? [])

        let scheduler = core.workers.first { $0.role == .scheduler && $0.pid != nil }
        one("bellwether_scheduler_pid", "gauge", "The scheduler's pid, 0 if none.", String(core.schedulerPID ?? 0))
        one("bellwether_scheduler_uptime_seconds", "gauge", "How long the scheduler has run, 0 if none.",
            Self.number(scheduler?.process.map { (now - $0.since).seconds } ?? 0))
        one("bellwether_scheduler_spawns_total", "counter", "Schedulers spawned: the first and every handover.",
            String(tally.schedulersSpawned))
        one("bellwether_scheduler_missing_seconds_total", "counter",
            "Time without a scheduler process while one was wanted.",
            Self.number(tally.schedulerMissing(at: now).seconds))

        if let lease {
            family("bellwether_lease_info", "gauge", "The scheduler lease: its kind and state.",
                   [([("kind", lease.kind), ("state", lease.state)], "1")])
            one("bellwether_lease_fence", "gauge", "The fence of the network lease this master holds, 0 if none.",
                String(lease.fence))
            family("bellwether_lease_renewal_age_seconds", "gauge",
                   "While this master holds the lease: how long ago its last counted renewal was sent.",
                   lease.renewalAge.map { [([], Self.number($0.seconds))] } ?? [])
        }

        one("bellwether_master_uptime_seconds", "gauge", "How long the master has run.",
            Self.number(masterUptime.seconds))
        if let usage {
            one("bellwether_master_cpu_seconds_total", "counter", "CPU time the master used, user and system.",
                Self.number(usage.cpuSeconds))
            one("bellwether_master_resident_memory_bytes", "gauge", "The master's resident set size.",
                String(usage.residentBytes))
        }
        return out
    }

    /// CPU seconds from `/proc/self/stat` (utime + stime, fields 14 and 15,
    /// counted after the parenthesized command name, which may hold spaces)
    /// and resident bytes from `/proc/self/statm` (its second field, in pages).
    static func usage(stat: String, statm: String, ticksPerSecond: Int, pageSize: Int) -> Usage? {
        guard ticksPerSecond > 0, let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After ")": state is field 3, so field N is at index N - 3.
        let pages = statm.split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]),
              pages.count > 1, let resident = Int(pages[1]) else { return nil }
        return Usage(cpuSeconds: Double(user + system) / Double(ticksPerSecond), residentBytes: resident * pageSize)
    }

    /// A sample value: Prometheus reads Go's float syntax, which Swift's matches.
    static func number(_ value: Double) -> String {
        value.isFinite ? String(value) : value.isNaN ? "NaN" : value > 0 ? "+Inf" : "-Inf"
    }

    static func escaped(_ value: String) -> String {
        var result = ""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result
    }
}
