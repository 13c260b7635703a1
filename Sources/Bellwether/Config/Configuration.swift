#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// Everything needed to spawn a worker, checked against the system.
public struct Launch: Hashable, Sendable {
    /// The resolved app executable.
    public var executable: String
    /// argv of the app, argv[0] as the user typed it.
    public var arguments: [String]
    /// "KEY=VALUE" entries every worker gets before its own WORKER_* variables.
    public var environment: [String]
    public var roleVariable: String
    public var directory: String?
    /// --user, --group, --umask, applied by the exec shim.
    public var credentials: Credentials
    /// --reload-nice: added to the master's nice value while a reload's
    /// replacement boots beside the worker it replaces.
    public var reloadNice: Int32 = 10
    /// --no-aslr: the workers' executables and libraries at the same,
    /// unrandomized addresses.
    public var randomizeLayout = true
    /// --preload: the workers are forked by a fork server of their generation.
    public var preload: PythonPreload?
}

/// Validated settings: the core's plan, the launch, and start-only settings.
public struct Configuration: Hashable, Sendable {
    public var settings: Settings
    public var plan: Plan
    public var launch: Launch
    public var tokenPath: String
    /// --control-socket, or master-PID.ctl in the runtime directory.
    public var controlSocket: String
    /// Sockets the master inherited from systemd (fd -> name), when LISTEN_PID is ours.
    public var inherited: [Int32: String]
    /// `--lease redis://…` or `postgres://…`, with the password from
    /// BELLWETHER_LEASE_PASSWORD (or, for PostgreSQL, PGPASSWORD) when the
    /// URL has none, and PostgreSQL's user defaulting to the master's.
    public var networkLease: LeaseStoreAddress?
    /// --watch paths, absolute and checked, with the filter of their changes.
    public var watch: [WatchTarget] = []
    public var watchFilter = WatchFilter()

    /// Variables the master never passes on: its own settings (they may hold
    /// secrets and would configure a nested bellwether) and the systemd
    /// variables addressed to the master itself.
    static func isPrivate(_ name: Substring) -> Bool {
        name.hasPrefix("BELLWETHER_") || WorkerEnvironment.systemd.contains(String(name))
    }

    /// Checks `settings` against the system. `environment` is the master's
    /// environment ("KEY=VALUE"), `directory` its working directory.
    public static func resolve(_ settings: Settings, environment: [String],
                               directory: String) throws(BellwetherError) -> Configuration {
        let reserved = WorkerEnvironment.perWorker + [settings.roleEnv]
        if WorkerEnvironment.perWorker.contains(settings.roleEnv) {
            throw .reservedVariable(settings.source("role-env"), name: settings.roleEnv)
        }
        var variables: [(String, String)] = environment.compactMap { entry in
            guard let equals = entry.firstIndex(of: "=") else { return nil }
            let key = entry[..<equals]
            if isPrivate(key) || reserved.contains(String(key)) { return nil }
            return (String(key), String(entry[entry.index(after: equals)...]))
        }
        func set(_ key: String, _ value: String) {
            variables.removeAll { $0.0 == key }
            variables.append((key, value))
        }
        // What a `set` of each entry in turn gives (an entry replaces the
        // earlier ones of its key and goes last), in one pass: one `set` each
        // made a config file of thousands of entries take minutes.
        var latest: [String: (order: Int, value: String)] = [:]
        for (order, entry) in settings.env.enumerated() {
            if reserved.contains(entry.key) || WorkerEnvironment.systemd.contains(entry.key) {
                throw .reservedVariable(entry.source, name: entry.key)
            }
            latest[entry.key] = (order, entry.value)
        }
        variables.removeAll { latest[$0.0] != nil }
        variables += latest.sorted { $0.value.order < $1.value.order }.map { ($0.key, $0.value.value) }
        if let zone = settings.timezone {
            try checkTimezone(zone, source: settings.source("timezone"),
                              zoneinfo: variables.first { $0.0 == "TZDIR" }?.1)
            set("TZ", zone)
        }

        let credentials = try Credentials.resolve(settings)
        let access = WorkerAccess(credentials)
        var workingDirectory = directory
        if let chdir = settings.chdir {
            workingDirectory = chdir.hasPrefix("/") ? chdir : directory + "/" + chdir
            if let error = Sys.isDirectory(workingDirectory) {
                throw .directoryUnusable(settings.source("chdir"), path: chdir, errno: error)
            }
            if let access, let denial = access.denial(workingDirectory, .search) {
                throw .userCannotEnter(settings.source("chdir"), path: chdir, user: access.user, denial)
            }
        }
        let path = variables.last { $0.0 == "PATH" }?.1 ?? "/usr/local/bin:/usr/bin:/bin"
        let executable = try CommandResolver.resolve(settings.command[0], path: path, directory: workingDirectory,
                                                     as: access)

        let networkLease = try settings.networkLease.map { lease throws(BellwetherError) in
            try resolve(lease, settings: settings, environment: Bellwether.dictionary(environment))
        }
        if settings.ready == .exec && settings.readyTimeout <= Timings().bootGrace {
            throw .invalidValue(settings.source("ready-timeout"), value: settings.readyTimeout.shortDescription,
                                expected: "more than the 1-second boot grace of --ready exec")
        }
        let watch = try WatchTarget.resolve(settings.watch, directory: directory)
        let inherited = inheritedSockets(environment)
        for address in settings.binds + [settings.schedulerBind].compactMap({ $0 }) {
            guard case .inherited(let fd) = address else { continue }
            if inherited.isEmpty {
                throw .notInherited(address: address.description,
                                    reason: "no socket inherited from systemd (LISTEN_FDS is not set for this process)")
            }
            if inherited[fd] == nil {
                throw .notInherited(address: address.description,
                                    reason: "systemd passed descriptors \(inherited.keys.sorted().map(String.init).joined(separator: ", ")) only")
            }
        }
        var plan = Plan(workers: settings.workers ?? min(Int(bw_online_cpus()), Plan.maximumWorkers),
                        scheduler: settings.scheduler, gracefulTimeout: settings.gracefulTimeout,
                        notifyReadiness: settings.ready == .notify, readyTimeout: settings.readyTimeout,
                        watchdog: settings.watchdog, bootAttempts: settings.bootAttempts)
        plan.maxWorkerAge = settings.maxWorkerAge
        plan.maxWorkerAgeJitter = settings.maxWorkerAgeJitter ?? settings.maxWorkerAge / 10
        plan.maxWorkerMemory = settings.maxWorkerMemory
        var launch = Launch(executable: executable, arguments: settings.command,
                            environment: variables.map { "\($0.0)=\($0.1)" }, roleVariable: settings.roleEnv,
                            directory: settings.chdir == nil ? nil : workingDirectory,
                            credentials: credentials, reloadNice: Int32(settings.reloadNice),
                            randomizeLayout: !settings.noASLR)
        if let value = settings.preload {
            launch.preload = try PythonPreload.resolve(value, source: settings.source("preload"),
                                                       command: settings.command, executable: executable,
                                                       path: path, directory: workingDirectory)
        }
        let tokenPath = settings.lease ?? defaultTokenPath(launch: launch, directory: workingDirectory,
                                                            environment: variables)
        let controlSocket = settings.controlSocket ?? defaultControlSocket(pid: getpid(), environment: variables)
        return Configuration(settings: settings, plan: plan, launch: launch, tokenPath: tokenPath,
                             controlSocket: controlSocket, inherited: inherited, networkLease: networkLease,
                             watch: watch,
                             watchFilter: WatchFilter(include: settings.watchInclude, exclude: settings.watchExclude))
    }

    /// A network lease's timings checked, its password and user filled in.
    static func resolve(_ lease: LeaseStoreAddress, settings: Settings,
                        environment: [String: String]) throws(BellwetherError) -> LeaseStoreAddress {
        if let rule = settings.leaseTimings.brokenRule { throw .leaseTimings(rule) }
        func given(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        switch lease {
        case .redis(var redis):
            if redis.password == nil { redis.password = given("BELLWETHER_LEASE_PASSWORD") }
            return .redis(redis)
        case .postgres(var postgres):
            if postgres.password == nil { postgres.password = given("BELLWETHER_LEASE_PASSWORD") ?? given("PGPASSWORD") }
            if postgres.user == nil { postgres.user = Credentials.userName(geteuid()) ?? given("USER") }
            return .postgres(postgres)
        }
    }

    /// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES addressed to this process.
    static func inheritedSockets(_ environment: [String]) -> [Int32: String] {
        let values = Bellwether.dictionary(environment)
        guard let count = values["LISTEN_FDS"].flatMap({ Int32($0) }), count > 0,
              values["LISTEN_PID"].flatMap({ Int32($0) }) == getpid() else { return [:] }
        let names = (values["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false)
        var result: [Int32: String] = [:]
        // systemd passes open descriptors 3, 4, …: the first one that is not
        // open ends them, however large LISTEN_FDS says it is (2147483647
        // would otherwise mean a loop of two billion and an overflow).
        for index in 0..<count {
            guard fcntl(3 + index, F_GETFD) != -1 else { break }
            result[3 + index] = Int(index) < names.count ? String(names[Int(index)]) : ""
        }
        return result
    }

    /// The zone must name a TZif file in the zoneinfo database.
    static func checkTimezone(_ zone: String, source: SettingSource, zoneinfo: String?) throws(BellwetherError) {
        let parts = zone.split(separator: "/", omittingEmptySubsequences: false)
        guard !zone.isEmpty, !zone.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == ".." || $0 == "." })
        else { throw .unknownTimezone(source, zone: zone) }
        let file = (zoneinfo ?? "/usr/share/zoneinfo") + "/" + zone
        guard let bytes = try? Sys.readFile(file, limit: 4), bytes.starts(with: Array("TZif".utf8)) else {
            throw .unknownTimezone(source, zone: zone)
        }
    }

    /// The default scheduler token: one per app (working directory and
    /// command line) per host, under the runtime directory.
    static func defaultTokenPath(launch: Launch, directory: String, environment: [(String, String)]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for byte in ([directory] + launch.arguments).joined(separator: "\0").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return runtimeDirectory(environment) + "/scheduler-" + String(repeating: "0", count: 16 - hex.count) + hex
            + ".lock"
    }

    /// Where a master of this pid listens by default; `bellwether status
    /// --pidfile` finds it through the pid.
    static func defaultControlSocket(pid: Int32, environment: [(String, String)]) -> String {
        runtimeDirectory(environment) + "/master-\(pid).ctl"
    }

    static func runtimeDirectory(_ environment: [(String, String)]) -> String {
        if let xdg = environment.first(where: { $0.0 == "XDG_RUNTIME_DIR" })?.1, xdg.hasPrefix("/") {
            return xdg + "/bellwether"
        }
        return getuid() == 0 ? "/run/bellwether" : "/tmp/bellwether-\(getuid())"
    }
}

/// Finds COMMAND the way the worker's execvp would, but in the master, with
/// the workers' PATH and as the workers' user (`access`; nil: the master's),
/// so that a typo or a command out of that user's reach fails at start with
/// one clear line. A PATH directory the user may not search is passed over.
enum CommandResolver {
    static func resolve(_ command: String, path: String, directory: String,
                        as access: WorkerAccess?) throws(BellwetherError) -> String {
        func absolute(_ candidate: String) -> String {
            candidate.hasPrefix("/") ? candidate : directory + "/" + candidate
        }
        /// Why `candidate`, which exists, cannot be the command; `problem`: the master's.
        func refusal(_ candidate: String, _ problem: Int32?) -> BellwetherError? {
            if let problem { return .notExecutable(command, reason: reason(problem)) }
            guard let access, let denial = access.executionDenial(candidate) else { return nil }
            return .userCannotExecute(command, user: access.user, denial)
        }
        if command.contains("/") {
            let candidate = absolute(command)
            let problem = Self.problem(candidate)
            if problem == ENOENT { throw .commandNotFound(command) }
            if let refusal = refusal(candidate, problem) { throw refusal }
            return candidate
        }
        var firstRefusal: BellwetherError?
        var outOfReach: (path: String, denial: WorkerAccess.Denial)?
        for entry in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = absolute((entry.isEmpty ? "." : String(entry)) + "/" + command)
            let problem = Self.problem(candidate)
            if problem == ENOENT || problem == ENOTDIR { continue }
            if let denial = access?.unreachable(candidate) {
                if outOfReach == nil { outOfReach = (candidate, denial) }
                continue
            }
            guard let refusal = refusal(candidate, problem) else { return candidate }
            if firstRefusal == nil { firstRefusal = refusal }
        }
        if let firstRefusal { throw firstRefusal }
        if let access, let outOfReach {
            throw .commandOutOfReach(command, user: access.user, path: outOfReach.path, outOfReach.denial)
        }
        throw .commandNotFound(command)
    }

    /// nil when `path` is an executable regular file, else why not.
    static func problem(_ path: String) -> Int32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return errno }
        if (info.st_mode & S_IFMT) == S_IFDIR { return EISDIR }
        if (info.st_mode & S_IFMT) != S_IFREG { return EACCES }
        return access(path, X_OK) == 0 ? nil : errno
    }

    static func reason(_ code: Int32) -> String {
        code == EISDIR ? "is a directory" : code == EACCES ? "permission denied (not an executable file)"
            : describe(code)
    }
}
