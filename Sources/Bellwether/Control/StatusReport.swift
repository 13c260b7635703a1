/// A JSON value, written without Foundation: the control socket's answers.
public indirect enum JSON: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSON])
    /// Keys in the order given.
    case object([(String, JSON)])

    public static func == (lhs: JSON, rhs: JSON) -> Bool { lhs.text == rhs.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }

    public var text: String {
        switch self {
        case .null: "null"
        case .bool(let flag): flag ? "true" : "false"
        case .int(let number): String(number)
        case .double(let number): number.isFinite ? String((number * 1000).rounded() / 1000) : "null"
        case .string(let value): quoted(value)
        case .array(let items): "[" + items.map(\.text).joined(separator: ",") + "]"
        case .object(let members): "{" + members.map { quoted($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }
}

/// What `bellwether status` shows: the master, its lease and every worker
/// it has not reaped yet, one row each, and a row for each slot that has no
/// worker while it backs off, built from the core's state.
public struct StatusReport: Sendable {
    public struct Row: Sendable {
        public var slot: Int
        /// The app's pid (its guard's until the guard has reported it).
        public var pid: Int32?
        /// The worker's guard, the app's parent.
        public var guardPID: Int32?
        public var role: Role
        public var generation: Int
        public var state: String
        public var uptime: Duration
        public var restarts: Int
        /// The slot's workers replaced by recycling, by reason.
        public var recycled: [SupervisorCore.Worker.Recycling.Kind: Int]
        public var lastExit: String?
        public var lastExitAgo: Duration?
        /// A slot backing off: how long until its next start.
        public var nextAttempt: Duration?
    }

    public var masterPID: Int32
    public var masterUptime: Duration
    public var generation: Int
    public var workers: Int
    public var stopping: Bool
    public var schedulerPID: Int32?
    /// nil with --no-scheduler's default token; else how the lease stands.
    public var lease: (kind: String, state: String)?
    public var rows: [Row]

    public init(core: SupervisorCore, masterPID: Int32, masterUptime: Duration, lease: (kind: String, state: String)?,
                now: Instant) {
        self.masterPID = masterPID
        self.masterUptime = masterUptime
        generation = core.generation
        workers = core.plan.workers
        stopping = core.isStopping
        schedulerPID = core.schedulerPID
        self.lease = lease
        func row(slot: Int, pid: Int32?, guardPID: Int32? = nil, role: Role, generation: Int, state: String,
                 uptime: Duration, nextAttempt: Duration? = nil) -> Row {
            let history = core.history[slot] ?? SupervisorCore.SlotHistory()
            return Row(slot: slot, pid: pid, guardPID: guardPID, role: role, generation: generation, state: state,
                       uptime: uptime, restarts: history.restarts, recycled: history.recycled,
                       lastExit: history.lastExit?.description,
                       lastExitAgo: history.lastExitAt.map { now - $0 }, nextAttempt: nextAttempt)
        }
        let workerRows = core.workers.map { worker in
            row(slot: worker.slot, pid: worker.shownPID, guardPID: worker.pid, role: worker.role,
                generation: worker.generation,
                state: worker.isRetiring || worker.appGone ? "stopping" : worker.isRecycling ? "recycling"
                    : worker.ready ? "ready" : "starting",
                uptime: worker.process.map { now - $0.since } ?? .zero)
        }
        let backoffRows = (0..<core.plan.workers).compactMap { slot in
            core.nextAttempt(of: slot, at: now).map { next in
                row(slot: slot, pid: nil,
                    role: slot == SupervisorCore.schedulerSlot && core.wantsScheduler ? .scheduler : .worker,
                    generation: core.generation, state: "backoff", uptime: .zero, nextAttempt: next - now)
            }
        }
        rows = (workerRows + backoffRows).sorted { ($0.slot, $0.generation) < ($1.slot, $1.generation) }
    }

    public var json: JSON {
        func optional(_ pid: Int32?) -> JSON { pid.map { .int(Int($0)) } ?? .null }
        return .object([
            ("master", .object([("pid", .int(Int(masterPID))), ("uptime", .double(masterUptime.seconds)),
                                ("generation", .int(generation)), ("workers", .int(workers)),
                                ("stopping", .bool(stopping))])),
            ("scheduler", optional(schedulerPID)),
            ("lease", lease.map { .object([("kind", .string($0.kind)), ("state", .string($0.state))]) } ?? .null),
            ("slots", .array(rows.map { row in
                .object([("slot", .int(row.slot)), ("pid", optional(row.pid)), ("guard", optional(row.guardPID)),
                         ("role", .string(row.role.rawValue)),
                         ("generation", .int(row.generation)), ("state", .string(row.state)),
                         ("uptime", .double(row.uptime.seconds)), ("restarts", .int(row.restarts)),
                         ("recycled", .object(SupervisorCore.Worker.Recycling.Kind.allCases.map {
                             ($0.rawValue, .int(row.recycled[$0] ?? 0))
                         })),
                         ("last_exit", row.lastExit.map { .string($0) } ?? .null),
                         ("last_exit_ago", row.lastExitAgo.map { .double($0.seconds) } ?? .null),
                         ("next_attempt", row.nextAttempt.map { .double($0.seconds) } ?? .null)])
            })),
        ])
    }

    public var text: String {
        var lines = ["master \(masterPID): generation \(generation), \(workers) workers"
            + (stopping ? ", stopping" : "") + ", up \(Self.age(masterUptime))",
            "scheduler: " + (schedulerPID.map { "pid \($0)" } ?? "none")]
        if let lease { lines.append("lease: \(lease.kind), \(lease.state)") }
        let header = ["SLOT", "PID", "ROLE", "GEN", "STATE", "UPTIME", "RESTARTS", "RECYCLED", "LAST EXIT"]
        let table = rows.map { row in
            [String(row.slot), row.pid.map(String.init) ?? "-", row.role.rawValue, String(row.generation),
             row.state + (row.nextAttempt.map { ", next attempt in \(Self.tenths($0))" } ?? ""),
             row.pid == nil ? "-" : Self.age(row.uptime), String(row.restarts), String(row.recycled.values.reduce(0, +)),
             row.lastExit.map { $0 + (row.lastExitAgo.map { ", \(Self.age($0)) ago" } ?? "") } ?? "-"]
        }
        let widths = header.indices.map { column in ([header] + table).map { $0[column].count }.max() ?? 0 }
        lines.append("")
        for cells in [header] + table {
            lines.append(cells.indices.map { $0 == cells.count - 1 ? cells[$0] : cells[$0].padded(to: widths[$0]) }
                .joined(separator: "  "))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// "3.2s": a wait to the tenth of a second, rounded up, so that a
    /// wait still to come never reads "0.0s".
    static func tenths(_ duration: Duration) -> String {
        let tenths = max(0, (duration.nanoseconds + 99_999_999) / 100_000_000)
        return "\(tenths / 10).\(tenths % 10)s"
    }

    /// "850ms", "42s", "3m12s", "5h03m", "2d04h".
    static func age(_ duration: Duration) -> String {
        let ms = max(0, duration.nanoseconds / 1_000_000)
        let s = ms / 1000
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : String(value) }
        if s < 1 { return "\(ms)ms" }
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(two(s % 60))s" }
        if s < 86400 { return "\(s / 3600)h\(two(s / 60 % 60))m" }
        return "\(s / 86400)d\(two(s / 3600 % 24))h"
    }
}
