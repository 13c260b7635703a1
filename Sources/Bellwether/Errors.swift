/// The exit statuses of `bellwether`, documented in the manual's EXIT STATUS.
public struct ExitCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Stopped by TERM, INT or QUIT after every worker was reaped; --help, --version, --check-config.
    public static let success = ExitCode(rawValue: 0)
    /// The first start failed: before any generation was ready, a slot failed to
    /// boot --boot-attempts times in a row, or no worker was ready within
    /// --ready-timeout. The master stopped what ran (gunicorn's convention).
    public static let failedStart = ExitCode(rawValue: 3)
    /// A bad flag, option value, environment value or --env entry, a missing
    /// --watch path, --watch without inotify (EX_USAGE).
    public static let usage = ExitCode(rawValue: 64)
    /// A listening address cannot be bound: in use, permission denied; or
    /// --lease rediss:// and OpenSSL's libssl cannot be loaded (EX_UNAVAILABLE).
    public static let unavailable = ExitCode(rawValue: 69)
    /// An operating-system call failed at start, or the exec shim is missing (EX_OSERR).
    public static let system = ExitCode(rawValue: 71)
    /// The pidfile or the scheduler token file cannot be created, the pidfile is
    /// locked by a running master or is a symbolic link (EX_CANTCREAT).
    public static let cannotCreate = ExitCode(rawValue: 73)
    /// Redis refused the lease's password, user or database at start, or its
    /// TLS certificate failed verification or the lease's CA file cannot be
    /// used; or --user or --group was given to a master not running as root
    /// (EX_NOPERM).
    public static let permission = ExitCode(rawValue: 77)
    /// The config file cannot be read or has a bad line (EX_CONFIG).
    public static let config = ExitCode(rawValue: 78)
    /// COMMAND was found but cannot be executed, by the workers' user if
    /// --user is given, or that user cannot enter --chdir.
    public static let notExecutable = ExitCode(rawValue: 126)
    /// COMMAND was not found in the workers' PATH, in a directory the
    /// workers' user may search.
    public static let commandNotFound = ExitCode(rawValue: 127)
}

/// Where a setting came from, for error messages.
public enum SettingSource: Hashable, Sendable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case configFile(path: String, line: Int)

    /// Flags, environment and config file are layers: 2, 1, 0.
    var layer: Int {
        switch self {
        case .flag: 2
        case .environment: 1
        case .configFile: 0
        }
    }

    public var description: String {
        switch self {
        case .flag(let name): name
        case .environment(let name): name
        case .configFile(let path, let line): "\(echoed(path)):\(line)"
        }
    }
}

/// Every error a user can see, with its message and exit status in one place.
public enum BellwetherError: Error, Hashable, Sendable {
    case unknownOption(String)
    case missingValue(String)
    case unexpectedValue(String)
    case notApplicable(String)
    case missingCommand
    case invalidValue(SettingSource, value: String, expected: String)
    case reservedVariable(SettingSource, name: String)
    case configUnreadable(path: String, errno: Int32)
    case configSyntax(path: String, line: Int, text: String)
    case configUnknownKey(path: String, line: Int, key: String)
    case configKeyNotAllowed(path: String, line: Int, key: String)
    case unknownTimezone(SettingSource, zone: String)
    case directoryUnusable(SettingSource, path: String, errno: Int32)
    case commandNotFound(String)
    case notExecutable(String, reason: String)
    /// --user: found, but that user may not execute it or enter --chdir,
    /// or (not found) may not reach where it is.
    case userCannotExecute(String, user: String, WorkerAccess.Denial)
    case userCannotEnter(SettingSource, path: String, user: String, WorkerAccess.Denial)
    case commandOutOfReach(String, user: String, path: String, WorkerAccess.Denial)
    case leaseTimings(String)
    case leaseRejected(String)
    /// --lease rediss://, and libssl cannot be loaded: why not.
    case tlsUnavailable(String)
    case pidfileBusy(path: String, pid: Int32)
    case unsafePidfile(path: String, reason: String)
    case cannotCreate(what: String, path: String, errno: Int32)
    case system(call: String, errno: Int32)
    case shimMissing(path: String)
    /// --preload, and share/bellwether/forkserver.py is not where bellwether looks.
    case forkServerMissing(path: String)
    case cannotBind(address: String, errno: Int32)
    case unsafeDirectory(path: String)
    case notInherited(address: String, reason: String)
    case controlSocketBusy(path: String)
    case needsRoot(SettingSource, uid: UInt32)
    case watchUnsupported(SettingSource)
    /// --preload with a command that is not Python, or a module list that cannot be read.
    case preloadRefused(SettingSource, reason: String)

    public var exitCode: ExitCode {
        switch self {
        case .unknownOption, .missingValue, .unexpectedValue, .notApplicable, .missingCommand, .invalidValue,
             .reservedVariable, .unknownTimezone, .directoryUnusable, .leaseTimings, .watchUnsupported,
             .preloadRefused:
            .usage
        case .configUnreadable, .configSyntax, .configUnknownKey, .configKeyNotAllowed: .config
        case .commandNotFound, .commandOutOfReach: .commandNotFound
        case .notExecutable, .userCannotExecute, .userCannotEnter: .notExecutable
        case .pidfileBusy, .unsafePidfile, .cannotCreate, .unsafeDirectory, .controlSocketBusy: .cannotCreate
        case .system, .shimMissing, .forkServerMissing: .system
        case .cannotBind, .tlsUnavailable: .unavailable
        case .leaseRejected, .needsRoot: .permission
        case .notInherited: .usage
        }
    }

    /// One line, without the "bellwether: " prefix.
    public var message: String {
        switch self {
        case .unknownOption(let option):
            "unknown option \(echoed(option)) (see bellwether --help)"
        case .missingValue(let option):
            "\(echoed(option)): a value is required"
        case .unexpectedValue(let option):
            "\(echoed(option)): takes no value"
        case .notApplicable(let option):
            "\(echoed(option)) does not apply here: only --control-socket, --pidfile and --config do"
        case .missingCommand:
            "no COMMAND given (usage: bellwether [OPTIONS] [--] COMMAND [ARG...])"
        case .invalidValue(let source, let value, let expected):
            "\(source): expected \(expected), got \(echoedQuoted(value))"
        case .preloadRefused(let source, let reason):
            "\(source): \(reason)"
        case .reservedVariable(let source, let name):
            "\(source): \(name) is set by bellwether for each worker and cannot be overridden"
        case .configUnreadable(let path, let errno):
            "config file \(echoed(path)): \(describe(errno))"
        case .configSyntax(let path, let line, let text):
            "\(echoed(path)):\(line): expected \"key = value\", got \(echoedQuoted(text))"
        case .configUnknownKey(let path, let line, let key):
            "\(echoed(path)):\(line): unknown setting \(echoedQuoted(key))"
        case .configKeyNotAllowed(let path, let line, let key):
            "\(echoed(path)):\(line): \(echoedQuoted(key)) cannot be set in a config file"
        case .unknownTimezone(let source, let zone):
            "\(source): unknown time zone \(echoedQuoted(zone)) (not in the zoneinfo database)"
        case .directoryUnusable(let source, let path, let errno):
            "\(source): \(echoed(path)): \(describe(errno))"
        case .commandNotFound(let name):
            "\(echoed(name)): command not found in the workers' PATH"
                + (ControlClient.verbs.contains(name) ? " (to ask a running master, put \(name) first: bellwether \(name) -p PIDFILE)" : "")
        case .notExecutable(let path, let reason):
            "\(echoed(path)): cannot be executed: \(reason)"
        case .userCannotExecute(let command, let user, let denial):
            "\(echoed(command)): user \(echoed(user)) cannot execute it (\(explained(denial)))"
        case .userCannotEnter(let source, let path, let user, let denial):
            "\(source): \(echoed(path)): user \(echoed(user)) cannot enter it (\(explained(denial)))"
        case .commandOutOfReach(let command, let user, let path, let denial):
            "\(echoed(command)): command not found in the workers' PATH for user \(echoed(user)) "
                + "(\(echoed(path)): \(explained(denial)))"
        case .leaseTimings(let rule):
            "lease timings: \(rule)"
        case .leaseRejected(let reason):
            "--lease: \(echoed(reason))"
        case .tlsUnavailable(let reason):
            "--lease rediss://: TLS needs OpenSSL's libssl.so.3, which cannot be loaded (\(echoed(reason))); "
                + "install it (Debian: libssl3) or use redis://"
        case .pidfileBusy(let path, let pid):
            "pidfile \(echoed(path)) is locked by running process \(pid); is bellwether already running?"
        case .unsafePidfile(let path, let reason):
            "pidfile \(echoed(path)) \(reason)"
        case .cannotCreate(let what, let path, let errno):
            "cannot create \(what) \(echoed(path)): \(describe(errno))"
        case .system(let call, let errno):
            "\(echoed(call)): \(describe(errno))"
        case .cannotBind(let address, let errno):
            "cannot listen on \(echoed(address)): \(describe(errno))"
        case .needsRoot(let source, let uid):
            "\(source): running workers as another user or group needs a master running as root "
                + "(this one runs as uid \(uid))"
        case .controlSocketBusy(let path):
            "control socket \(echoed(path)) is in use by a running master; choose another --control-socket"
        case .unsafeDirectory(let path):
            "runtime directory \(echoed(path)) must be a directory of this user's that others cannot write; "
                + "set XDG_RUNTIME_DIR or --lease file:PATH"
        case .notInherited(let address, let reason):
            "\(echoed(address)): \(reason)"
        case .watchUnsupported(let source):
            "\(source): watching files for changes needs inotify, which only Linux has"
        case .shimMissing(let path):
            "exec shim \(echoed(path)) is missing or not executable; install bellwether-exec beside bellwether"
        case .forkServerMissing(let path):
            "--preload: the fork server \(echoed(path)) is missing; install share/bellwether/forkserver.py "
                + "with bellwether (the release, the package and the wheel carry it)"
        }
    }
}

/// What the workers' user may not do: "search permission denied on /root".
private func explained(_ denial: WorkerAccess.Denial) -> String {
    switch denial {
    case .denied(let permission, let path):
        let name = switch permission {
        case .search: "search"
        case .read: "read"
        case .execute: "execute"
        }
        return "\(name) permission denied on \(echoed(path))"
    case .interpreter(let path, let denial):
        return "its interpreter \(echoed(path)): \(explained(denial))"
    }
}

/// The most of one user-given text that a message repeats, in characters as
/// shown: enough to recognise a value, and a 1 MB argument still makes a line
/// one can read.
let echoLimit = 200

/// User-given text as a message shows it: escaped as `quoted` escapes, so
/// that the message stays one line, and cut after `echoLimit` characters
/// with the length of the whole.
func echoed(_ text: String) -> String {
    let (shown, cut) = escaped(text, quoting: false, limit: echoLimit)
    return cut ? shown + "… (\(text.utf8.count) bytes)" : shown
}

/// `echoed`, in double quotes.
func echoedQuoted(_ text: String) -> String {
    let (shown, cut) = escaped(text, quoting: true, limit: echoLimit)
    return cut ? "\"\(shown)…\" (\(text.utf8.count) bytes)" : "\"\(shown)\""
}

/// The whole of `text` in double quotes, escaped: a JSON string, and one line.
func quoted(_ text: String) -> String {
    "\"" + escaped(text, quoting: true, limit: .max).text + "\""
}

/// Escapes what would break a line or drive a terminal (C0 and C1 controls,
/// DEL, U+2028, U+2029) as \uXXXX, valid in JSON log lines as in text ones;
/// with `quoting`, `"` and `\` too. Stops once `limit` characters are out.
private func escaped(_ text: String, quoting: Bool, limit: Int) -> (text: String, cut: Bool) {
    var out = ""
    var length = 0
    for scalar in text.unicodeScalars {
        if length >= limit { return (out, true) }
        switch scalar {
        case "\"" where quoting: out += "\\\""; length += 2
        case "\\" where quoting: out += "\\\\"; length += 2
        case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) || scalar == "\u{2028}"
            || scalar == "\u{2029}":
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            length += 6
        default: out.unicodeScalars.append(scalar); length += 1
        }
    }
    return (out, false)
}
