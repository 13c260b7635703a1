/// Every option, once: its names on the command line, in the environment and
/// in the config file, its help line, and how it sets `Settings`. `--help`,
/// the parser, the environment reader and the config reader all use this table.
struct OptionSpec: Sendable {
    struct Places: OptionSet, Sendable {
        let rawValue: Int
        static let environment = Places(rawValue: 1)
        static let configFile = Places(rawValue: 2)
        static let everywhere: Places = [.environment, .configFile]
    }

    typealias Apply = @Sendable (inout Settings, String, SettingSource) throws(BellwetherError) -> Void

    let long: String
    let short: Character?
    /// nil for a switch that takes no value on the command line.
    let valueName: String?
    let help: String
    let places: Places
    /// Extra environment names, highest precedence first, before BELLWETHER_<LONG>.
    let extraEnvironment: [String]
    let apply: Apply

    init(_ long: String, short: Character? = nil, value: String? = nil, places: Places = .everywhere,
         environment: [String] = [], help: String, apply: @escaping Apply) {
        self.long = long
        self.short = short
        self.valueName = value
        self.places = places
        self.extraEnvironment = environment
        self.help = help
        self.apply = apply
    }

    var environmentNames: [String] {
        guard places.contains(.environment) else { return [] }
        let upper = "BELLWETHER_" + String(long.uppercased().map { $0 == "-" ? "_" : $0 })
        return extraEnvironment + [upper]
    }

    static func named(_ long: String) -> OptionSpec? { all.first { $0.long == long } }
    static func named(short: Character) -> OptionSpec? { all.first { $0.short == short } }

    static let all: [OptionSpec] = [
        OptionSpec("workers", short: "w", value: "N", environment: ["WORKERS_COUNT"],
                   help: "number of worker processes, 1-\(Plan.maximumWorkers) (default: online CPUs)") {
            settings, value, source throws(BellwetherError) in
            settings.workers = try Parse.count(value, source: source)
        },
        OptionSpec("role-env", value: "NAME", help: "variable that carries the role (default: WORKER_ROLE)") {
            settings, value, source throws(BellwetherError) in
            settings.roleEnv = try Parse.variableName(value, source: source)
            settings.sources["role-env"] = source
        },
        OptionSpec("no-scheduler", help: "give every worker the role \"worker\"") {
            settings, value, source throws(BellwetherError) in
            settings.scheduler = !(try Parse.boolean(value, source: source))
        },
        OptionSpec("graceful-timeout", value: "SECONDS",
                   help: "time a worker's process tree has to exit after TERM before SIGKILL (default: 30)") {
            settings, value, source throws(BellwetherError) in
            settings.gracefulTimeout = try Parse.seconds(value, source: source)
        },
        OptionSpec("env", short: "e", value: "KEY=VALUE", places: .configFile,
                   help: "set a variable in every worker (repeatable)") {
            settings, value, source throws(BellwetherError) in
            settings.env.append(try Parse.envEntry(value, source: source))
        },
        OptionSpec("chdir", value: "DIR", help: "working directory of the workers") {
            settings, value, source throws(BellwetherError) in
            settings.chdir = try Parse.nonEmpty(value, source: source, expected: "a directory")
            settings.sources["chdir"] = source
        },
        OptionSpec("pidfile", short: "p", value: "PATH", help: "write the master's pid to PATH") {
            settings, value, source throws(BellwetherError) in
            settings.pidfile = try Parse.nonEmpty(value, source: source, expected: "a file path")
        },
        OptionSpec("control-socket", short: "s", value: "PATH",
                   help: "the control socket for bellwether status|reload|stop|scale (default: see FILES)") {
            settings, value, source throws(BellwetherError) in
            settings.controlSocket = try Parse.nonEmpty(value, source: source, expected: "a file path")
        },
        OptionSpec("timezone", value: "ZONE", help: "export TZ=ZONE to workers, checked against zoneinfo") {
            settings, value, source throws(BellwetherError) in
            settings.timezone = value
            settings.sources["timezone"] = source
        },
        OptionSpec("bind", short: "b", value: "ADDRESS",
                   help: "listen on HOST:PORT, [IPV6]:PORT, :PORT, unix:PATH or fd://N (repeatable)") {
            settings, value, source throws(BellwetherError) in
            let address = try BindAddress.parse(value, source: source)
            if settings.bindsLayer != source.layer { settings.binds = []; settings.bindsSeen = [] }
            settings.bindsLayer = source.layer
            if settings.bindsSeen.insert(address).inserted { settings.binds.append(address) }
            settings.sources["bind"] = source
        },
        OptionSpec("bind-mode", value: "OCTAL", help: "permissions of unix: socket files (e.g. 660)") {
            settings, value, source throws(BellwetherError) in
            settings.bindMode = try Parse.octalMode(value, source: source, example: "660")
        },
        OptionSpec("backlog", value: "N", help: "listen backlog of bound sockets (default: 2048)") {
            settings, value, source throws(BellwetherError) in
            guard let backlog = Int(value), (1...65535).contains(backlog) else {
                throw .invalidValue(source, value: value, expected: "a whole number from 1 to 65535")
            }
            settings.backlog = backlog
        },
        OptionSpec("scheduler-bind", value: "ADDRESS",
                   help: "a socket only the scheduler worker receives, named \"scheduler\"") {
            settings, value, source throws(BellwetherError) in
            settings.schedulerBind = try BindAddress.parse(value, source: source)
            settings.sources["scheduler-bind"] = source
        },
        OptionSpec("metrics-bind", value: "ADDRESS",
                   help: "serve Prometheus metrics at GET /metrics on HOST:PORT, [IPV6]:PORT or unix:PATH") {
            settings, value, source throws(BellwetherError) in
            settings.metricsBind = try BindAddress.parse(value, source: source, inherited: false)
        },
        OptionSpec("ready", value: "exec|notify",
                   help: "a worker is ready once up for 1 s (exec) or after READY=1 (notify)") {
            settings, value, source throws(BellwetherError) in
            guard let ready = Readiness(rawValue: value) else {
                throw .invalidValue(source, value: value, expected: "exec or notify")
            }
            settings.ready = ready
        },
        OptionSpec("ready-timeout", value: "SECONDS",
                   help: "kill a worker not ready after SECONDS (default: 60)") {
            settings, value, source throws(BellwetherError) in
            settings.readyTimeout = try Parse.seconds(value, source: source, minimum: 0.001)
            settings.sources["ready-timeout"] = source
        },
        OptionSpec("boot-attempts", value: "N",
                   help: "first start: exit 3 after N failed boots of a slot in a row (default: 5; 0: never)") {
            settings, value, source throws(BellwetherError) in
            guard let attempts = Int(value), (0...Plan.maximumBootAttempts).contains(attempts) else {
                throw .invalidValue(source, value: value,
                                    expected: "a whole number from 0 to \(Plan.maximumBootAttempts)")
            }
            settings.bootAttempts = attempts
        },
        OptionSpec("timeout", value: "SECONDS",
                   help: "watchdog: abort a worker silent for SECONDS after WATCHDOG=1 (default: off)") {
            settings, value, source throws(BellwetherError) in
            settings.watchdog = try Parse.seconds(value, source: source)
        },
        OptionSpec("user", short: "u", value: "USER",
                   help: "run workers as USER (name or uid; needs a master running as root)") {
            settings, value, source throws(BellwetherError) in
            settings.user = try Parse.nonEmpty(value, source: source, expected: "a user name or uid")
            settings.sources["user"] = source
        },
        OptionSpec("group", short: "g", value: "GROUP",
                   help: "run workers as GROUP (default: USER's group; needs root)") {
            settings, value, source throws(BellwetherError) in
            settings.group = try Parse.nonEmpty(value, source: source, expected: "a group name or gid")
            settings.sources["group"] = source
        },
        OptionSpec("umask", value: "OCTAL", help: "umask of the workers, e.g. 027 (default: the master's)") {
            settings, value, source throws(BellwetherError) in
            settings.umask = try Parse.octalMode(value, source: source, example: "027")
        },
        OptionSpec("reload-nice", value: "N",
                   help: "a reload's replacements boot at nice +N until ready, 0-19 (default: 10; 0: off)") {
            settings, value, source throws(BellwetherError) in
            guard let nice = Int(value), (0...19).contains(nice) else {
                throw .invalidValue(source, value: value, expected: "a whole number from 0 to 19")
            }
            settings.reloadNice = nice
        },
        OptionSpec("max-worker-age", value: "SECONDS",
                   help: "recycle a worker older than SECONDS, its replacement ready first (default: off)") {
            settings, value, source throws(BellwetherError) in
            settings.maxWorkerAge = try Parse.seconds(value, source: source, maximum: Parse.longestAge)
        },
        OptionSpec("max-worker-age-jitter", value: "SECONDS",
                   help: "add up to SECONDS to each worker's age limit (default: a tenth of it)") {
            settings, value, source throws(BellwetherError) in
            settings.maxWorkerAgeJitter = try Parse.seconds(value, source: source, maximum: Parse.longestAge)
        },
        OptionSpec("max-worker-memory", value: "SIZE",
                   help: "recycle a worker whose process tree uses more than SIZE (e.g. 512M, 2G; default: off)") {
            settings, value, source throws(BellwetherError) in
            settings.maxWorkerMemory = try Parse.size(value, source: source)
        },
        OptionSpec("preload", value: "MODULES",
                   help: "Python only: one fork server per generation imports MODULES (a,b or @FILE; - for none) "
                       + "and forks the workers") {
            settings, value, source throws(BellwetherError) in
            settings.preload = try Parse.nonEmpty(value, source: source, expected: "module names, @FILE or -")
        },
        OptionSpec("no-aslr",
                   help: "start workers without address-space randomization: one shared layout (see the manual)") {
            settings, value, source throws(BellwetherError) in
            settings.noASLR = try Parse.boolean(value, source: source)
        },
        OptionSpec("lease", value: "URL",
                   help: "one scheduler per lease: file:PATH, redis[s]://[USER:PASS@]HOST[:PORT][/DB][?key=K] or "
                       + "postgres://[USER[:PASS]@]HOST[:PORT][/DBNAME][?key=K&table=T]") {
            settings, value, source throws(BellwetherError) in
            switch try LeaseAddress.parse(value, source: source) {
            case .file(let path): settings.lease = path; settings.networkLease = nil
            case .redis(let address): settings.networkLease = .redis(address); settings.lease = nil
            case .postgres(let address): settings.networkLease = .postgres(address); settings.lease = nil
            }
        },
        OptionSpec("lease-ttl", value: "SECONDS", help: "network lease: expiry of the key, L (default: 15)") {
            settings, value, source throws(BellwetherError) in
            settings.leaseTimings.ttl = try Parse.seconds(value, source: source, minimum: 0.001)
        },
        OptionSpec("lease-renew-interval", value: "SECONDS", help: "network lease: renew every R (default: 2)") {
            settings, value, source throws(BellwetherError) in
            settings.leaseTimings.renewInterval = try Parse.seconds(value, source: source, minimum: 0.001)
        },
        OptionSpec("lease-renew-deadline", value: "SECONDS",
                   help: "network lease: step down after D without a renewal (default: 10)") {
            settings, value, source throws(BellwetherError) in
            settings.leaseTimings.renewDeadline = try Parse.seconds(value, source: source, minimum: 0.001)
        },
        OptionSpec("lease-grace", value: "SECONDS",
                   help: "network lease: on step-down, SIGKILL the scheduler G after TERM (default: 5)") {
            settings, value, source throws(BellwetherError) in
            settings.leaseTimings.grace = try Parse.seconds(value, source: source)
        },
        OptionSpec("lease-takeover-delay", value: "SECONDS",
                   help: "network lease: wait H after acquiring before starting a scheduler (default: 17)") {
            settings, value, source throws(BellwetherError) in
            settings.leaseTimings.takeoverDelay = try Parse.seconds(value, source: source)
        },
        OptionSpec("watch", value: "PATH", places: .configFile,
                   help: "reload when a file under PATH changes (repeatable; Linux; for development)") {
            settings, value, source throws(BellwetherError) in
            let path = try Parse.nonEmpty(value, source: source, expected: "a file or directory")
            settings.watch.append(WatchEntry(path: path, source: source))
        },
        OptionSpec("watch-include", value: "GLOB", places: .configFile,
                   help: "--watch: a file name that counts besides *.py (repeatable)") {
            settings, value, source throws(BellwetherError) in
            settings.watchInclude.append(try Parse.nonEmpty(value, source: source, expected: "a glob"))
        },
        OptionSpec("watch-exclude", value: "GLOB", places: .configFile,
                   help: "--watch: a file or directory name to ignore besides the defaults (repeatable)") {
            settings, value, source throws(BellwetherError) in
            settings.watchExclude.append(try Parse.nonEmpty(value, source: source, expected: "a glob"))
        },
        OptionSpec("config", short: "c", value: "FILE", places: .environment,
                   help: "read settings from FILE (key = value lines); re-read on HUP") {
            settings, value, source throws(BellwetherError) in
            settings.config = try Parse.nonEmpty(value, source: source, expected: "a file path")
        },
        OptionSpec("check-config", places: [], help: "validate the settings and COMMAND, print them, exit") {
            settings, _, _ throws(BellwetherError) in settings.checkConfig = true
        },
        OptionSpec("log-format", value: "text|json", help: "format of the log on stderr (default: text)") {
            settings, value, source throws(BellwetherError) in
            guard let format = LogFormat(rawValue: value) else {
                throw .invalidValue(source, value: value, expected: "text or json")
            }
            settings.logFormat = format
        },
        OptionSpec("worker-output", value: "inherit|prefix|json",
                   help: "workers' stdout/stderr: inherited, or each line labelled SLOT/ROLE/PID, or as JSON "
                       + "log lines (default: inherit)") {
            settings, value, source throws(BellwetherError) in
            guard let output = WorkerOutput(rawValue: value) else {
                throw .invalidValue(source, value: value, expected: "inherit, prefix or json")
            }
            settings.workerOutput = output
        },
        OptionSpec("help", short: "h", places: [], help: "print this help and exit") { _, _, _ throws(BellwetherError) in },
        OptionSpec("version", places: [], help: "print the version and exit") { _, _, _ throws(BellwetherError) in },
    ]
}
