/// A worker's environment, built in this one place: the launch's variables
/// (the master's own, less what it keeps to itself, plus `--env`), then what
/// the master sets for each worker. `Configuration` reserves exactly the
/// names listed here, so `--env` can never shadow one.
enum WorkerEnvironment {
    /// Per worker: which slot, of how many, of which generation, and, for a
    /// lease scheduler, its fence and holder. The role variable
    /// (`--role-env`, WORKER_ROLE by default) goes with them.
    static let perWorker = ["WORKERS_COUNT", "WORKER_ID", "WORKER_GENERATION", "WORKER_FENCING_TOKEN",
                            "WORKER_LEASE_HOLDER"]
    /// systemd's protocol, as the master speaks it to its workers: passed
    /// sockets, the notify socket and the watchdog. The same names addressed
    /// to the master itself are never passed on.
    static let systemd = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                          "WATCHDOG_PID"]

    /// The environment of the worker `order` asks for. `sockets`: the names
    /// of the descriptors at 3, 4, … (LISTEN_FDNAMES). LISTEN_PID and
    /// WATCHDOG_PID are placeholders that the guard sets to the app's pid.
    static func variables(for order: SpawnOrder, launch: Launch, sockets: [String], notifySocket: String,
                          watchdog: Duration, grant: LeaseGrant?) -> [String] {
        var variables = launch.environment + ["NOTIFY_SOCKET=\(notifySocket)"]
        if watchdog > .zero {
            variables += ["WATCHDOG_USEC=\(watchdog.nanoseconds / 1000)", "WATCHDOG_PID=0"]
        }
        if let grant {
            variables += ["WORKER_FENCING_TOKEN=\(grant.fence)", "WORKER_LEASE_HOLDER=\(grant.holder)"]
        }
        variables += [
            "WORKERS_COUNT=\(order.workersCount)", "WORKER_ID=\(order.slot)",
            "WORKER_GENERATION=\(order.generation)", "\(launch.roleVariable)=\(order.role.rawValue)",
        ]
        if !sockets.isEmpty {
            variables += ["LISTEN_FDS=\(sockets.count)", "LISTEN_FDNAMES=" + sockets.joined(separator: ":"),
                          "LISTEN_PID=0"]
        }
        return variables
    }
}
