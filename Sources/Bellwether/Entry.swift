import CBellwether

/// The program: parse the configuration, build the master, run it, and map
/// the outcome to an exit status.
public enum Bellwether {
    public static func main(arguments: [String]) -> Int32 {
        let environment = Sys.environment()
        if arguments.count > 1, ControlClient.verbs.contains(arguments[1]) {
            return ControlClient.main(arguments: Array(arguments.dropFirst()), environment: environment)
        }
        do throws(BellwetherError) {
            let request = try SettingsLoader.request(arguments: Array(arguments.dropFirst()),
                                                     environment: Self.dictionary(environment))
            let loader: SettingsLoader
            switch request {
            case .help: print(Help.text, terminator: ""); return ExitCode.success.rawValue
            case .version: print("bellwether \(Version.current)"); return ExitCode.success.rawValue
            case .run(let value): loader = value
            }
            let directory = Sys.currentDirectory()
            let configuration = try Configuration.resolve(try loader.load(), environment: environment,
                                                          directory: directory)
            if configuration.settings.checkConfig {
                print(Self.summary(configuration), terminator: "")
                return ExitCode.success.rawValue
            }
            let master = try Master(configuration: configuration, loader: loader, environment: environment,
                                    directory: directory)
            return master.run()
        } catch {
            try? Sys.writeAll(2, Array("bellwether: \(error.message)\n".utf8))
            return error.exitCode.rawValue
        }
    }

    static func dictionary(_ environment: [String]) -> [String: String] {
        var result: [String: String] = [:]
        for entry in environment {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            result[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return result
    }

    static func summary(_ configuration: Configuration) -> String {
        let settings = configuration.settings
        var lines = [
            "configuration OK",
            "workers = \(configuration.plan.workers)",
            "scheduler = \(configuration.plan.scheduler)",
            "role-env = \(settings.roleEnv)",
            "graceful-timeout = \(configuration.plan.gracefulTimeout.shortDescription)",
            "reload-nice = \(configuration.launch.reloadNice)" + BootPriority.unavailableNote(configuration.launch.reloadNice),
            "token = \(configuration.tokenPath)",
            "log-format = \(settings.logFormat.rawValue)",
            "worker-output = \(settings.workerOutput.rawValue)",
            "command = \(configuration.launch.executable)"
                + configuration.launch.arguments.dropFirst().map { " " + $0 }.joined(),
        ]
        if let lease = configuration.networkLease {
            let t = settings.leaseTimings
            lines.append("lease = \(lease) (ttl \(t.ttl.shortDescription), renew every \(t.renewInterval.shortDescription), "
                + "deadline \(t.renewDeadline.shortDescription), grace \(t.grace.shortDescription), "
                + "takeover delay \(t.takeoverDelay.shortDescription))")
        }
        let credentials = configuration.launch.credentials.summary
        if !credentials.isEmpty { lines.append(credentials) }
        if settings.noASLR { lines.append("no-aslr = true") }
        let plan = configuration.plan
        if plan.maxWorkerAge > .zero {
            lines.append("max-worker-age = \(plan.maxWorkerAge.shortDescription) "
                + "(plus up to \(plan.maxWorkerAgeJitter.shortDescription) of jitter)")
        }
        if plan.maxWorkerMemory > 0 {
            lines.append("max-worker-memory = \(plan.maxWorkerMemory) bytes (\(plan.maxWorkerMemory >> 20) MiB)")
        }
        if let chdir = settings.chdir { lines.append("chdir = \(chdir)") }
        if let pidfile = settings.pidfile { lines.append("pidfile = \(pidfile)") }
        lines.append("control-socket = \(settings.controlSocket ?? configuration.controlSocket.replacingPID())")
        for address in settings.binds { lines.append("bind = \(address)") }
        if let address = settings.schedulerBind { lines.append("scheduler-bind = \(address)") }
        if let zone = settings.timezone { lines.append("timezone = \(zone)") }
        for entry in settings.env { lines.append("env = \(entry.key)=\(entry.value)") }
        for target in configuration.watch { lines.append("watch = \(target.path)") }
        if !configuration.watch.isEmpty {
            lines.append("watch-include = " + configuration.watchFilter.include.joined(separator: " "))
            lines.append("watch-exclude = " + configuration.watchFilter.exclude.joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

private extension String {
    /// The default control socket names the pid of the master that will run:
    /// --check-config shows the pattern.
    func replacingPID() -> String {
        guard let slash = lastIndex(of: "/") else { return self }
        return self[...slash] + "master-PID.ctl"
    }
}
