#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// `bellwether status|reload|stop|scale N`: asks a running master over its
/// control socket. The socket is the one given with --control-socket (or
/// BELLWETHER_CONTROL_SOCKET, or `control-socket` in --config's file), else
/// the default one of the pid in --pidfile, else the only running master's
/// in the runtime directory.
enum ControlClient {
    static let verbs: Set<String> = ["status", "reload", "stop", "scale"]

    struct Failure: Error {
        let message: String
        let code: ExitCode
    }

    static func main(arguments: [String], environment: [String]) -> Int32 {
        // A master that closes first must give an error, not kill us.
        Sys.calls.setSignalDisposition(SIGPIPE, ignore: true)
        if arguments.dropFirst().contains(where: { $0 == "-h" || $0 == "--help" }) {
            print(usage)
            return ExitCode.success.rawValue
        }
        do {
            let (request, path) = try parse(arguments, environment: environment)
            let answer = try ask(request, at: path)
            print(answer, terminator: "")
            return ExitCode.success.rawValue
        } catch {
            try? Sys.writeAll(2, Array("bellwether \(arguments.first ?? ""): \(error.message)\n".utf8))
            return error.code.rawValue
        }
    }

    static let usage = "usage: bellwether status [--json] | reload | stop | scale N  "
        + "[-s|--control-socket PATH] [-p|--pidfile PATH] [-c|--config FILE]"

    /// The request and the socket's path, from the arguments after the program name.
    static func parse(_ arguments: [String], environment: [String]) throws(Failure) -> (ControlRequest, String) {
        let verb = arguments.first ?? ""
        var json = false
        var rest: [String] = []
        for argument in arguments.dropFirst() {
            switch argument {
            case "--json" where verb == "status": json = true
            default: rest.append(argument)
            }
        }
        // scale's N may come before the options or after them.
        let leading = verb == "scale" && rest.first.map { !$0.hasPrefix("-") || Int($0) != nil } == true
            ? [rest.removeFirst()] : []
        let settings: Settings
        do throws(BellwetherError) {
            (settings, rest) = try locate(rest, environment: environment)
            rest = leading + rest
        } catch {
            throw Failure(message: error.message, code: error.exitCode)
        }
        let request: ControlRequest
        let expected = verb == "scale" ? 1 : 0
        switch (verb, rest.count) {
        case ("status", 0): request = .status(json: json)
        case ("reload", 0): request = .reload
        case ("stop", 0): request = .stop
        case ("scale", 1):
            guard let count = Int(rest[0]), (1...Plan.maximumWorkers).contains(count) else {
                throw Failure(message: "expected a whole number from 1 to \(Plan.maximumWorkers), got \(quoted(rest[0]))",
                              code: .usage)
            }
            request = .scale(count)
        default:
            let extra = rest.count > expected ? quoted(rest[expected]) : "end of arguments"
            throw Failure(message: "unexpected \(extra) (\(usage))", code: .usage)
        }
        return (request, try socketPath(settings, environment: environment))
    }

    /// The settings that find the master (--control-socket, --pidfile, from
    /// flags, environment or --config's file) and the remaining arguments.
    static func locate(_ arguments: [String], environment: [String]) throws(BellwetherError) -> (Settings, [String]) {
        let line = try SettingsLoader.parseCommandLine(arguments)
        let locating = ["control-socket", "pidfile"]
        if let other = line.assignments.first(where: { !(locating + ["config"]).contains($0.spec.long) }) {
            throw .notApplicable(other.source.description)
        }
        let fromEnvironment = try SettingsLoader.readEnvironment(Bellwether.dictionary(environment))
        var configPath: String?
        for assignment in fromEnvironment + line.assignments where assignment.spec.long == "config" {
            configPath = assignment.value
        }
        let fromFile = try configPath.map { path throws(BellwetherError) in try SettingsLoader.readConfigFile(path) } ?? []
        var settings = Settings()
        for assignment in fromFile + fromEnvironment + line.assignments where locating.contains(assignment.spec.long) {
            try assignment.spec.apply(&settings, assignment.value, assignment.source)
        }
        return (settings, line.command)
    }

    static func socketPath(_ settings: Settings, environment: [String]) throws(Failure) -> String {
        if let path = settings.controlSocket { return path }
        let variables = Bellwether.dictionary(environment).map { ($0.key, $0.value) }
        // The master's runtime directory follows its XDG_RUNTIME_DIR, which a
        // service may lack and a login shell have: look in both places.
        let directories = [Configuration.runtimeDirectory(variables),
                           Configuration.runtimeDirectory(variables.filter { $0.0 != "XDG_RUNTIME_DIR" })]
            .reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        if let pidfile = settings.pidfile {
            guard let pid = Pidfile.read(pidfile) else {
                throw Failure(message: "pidfile \(pidfile) is missing or names no pid", code: .unavailable)
            }
            guard Pidfile.isRunning(pid) else {
                throw Failure(message: "pidfile \(pidfile) names pid \(pid), which is not running", code: .unavailable)
            }
            let candidates = directories.map { $0 + "/master-\(pid).ctl" }
            return candidates.first { Sys.calls.isAccessible($0, F_OK) } ?? candidates[0]
        }
        // The first directory with a running master wins.
        var running: [String] = []
        for directory in directories where running.isEmpty {
            running = masters(in: directory)
        }
        switch running.count {
        case 0:
            throw Failure(message: "no running master found in \(directories.joined(separator: " or ")); "
                + "name one with --control-socket or --pidfile", code: .unavailable)
        case 1:
            return running[0]
        default:
            throw Failure(message: "\(running.count) masters are running ("
                + running.sorted().joined(separator: ", ") + "); name one with --control-socket or --pidfile",
                code: .usage)
        }
    }

    /// The default control sockets of running masters in `directory`: named
    /// after a running pid, and accepting connections.
    static func masters(in directory: String) -> [String] {
        var running: [String] = []
        for name in Sys.entries(directory) {
            guard name.hasPrefix("master-"), name.hasSuffix(".ctl"),
                  let pid = Int32(name.dropFirst(7).dropLast(4)), Pidfile.isRunning(pid) else { continue }
            let path = directory + "/" + name
            guard case .success(let info) = Sys.calls.status(path, followLinks: false), info.kind == .socket
            else { continue }
            // The file of a master that was SIGKILLed stays behind, and its
            // pid may have been reused: only a socket with a listener counts.
            if Sys.calls.unixListening(path) == 1 { running.append(path) }
        }
        return running
    }

    /// Checks the socket file, connects, sends the request, returns the answer.
    static func ask(_ request: ControlRequest, at path: String) throws(Failure) -> String {
        let info: FileStatus
        switch Sys.calls.status(path, followLinks: false) {
        case .success(let found): info = found
        case .failure(let error):
            throw Failure(message: "no master listens on \(path): \(describe(error.errno))", code: .unavailable)
        }
        // Only a socket of our own user, that nobody else can use, is trusted
        // to be our master: anyone could have put a socket file there.
        guard info.kind == .socket else {
            throw Failure(message: "\(path) is not a socket; refusing", code: .permission)
        }
        // Root may ask any user's master; the answer must then come from the
        // socket file's owner.
        let user = Sys.calls.effectiveUserID()
        guard info.owner == user || user == 0 else {
            throw Failure(message: "control socket \(path) belongs to uid \(info.owner), not to you (uid \(user)); "
                + "refusing", code: .permission)
        }
        guard info.mode & 0o077 == 0 else {
            throw Failure(message: "control socket \(path) has mode \(String(info.mode & 0o777, radix: 8)), "
                + "which lets other users in; refusing (it must be 600)", code: .permission)
        }
        let fd = Sys.calls.connectUnix(path, timeout: 5)
        guard fd != -EAGAIN else {
            throw Failure(message: "the master at \(path) did not accept within 5 s", code: .unavailable)
        }
        guard fd >= 0 else {
            throw Failure(message: "no master listens on \(path): \(describe(-fd))", code: .unavailable)
        }
        defer { Sys.closeFile(fd) }
        // Whoever answers must be the file's owner: a socket swapped in
        // after the checks above is refused too.
        let peer = Sys.calls.peerUID(fd)
        guard peer == Int64(info.owner) else {
            throw Failure(message: "control socket \(path) is served by uid \(peer), not by its owner "
                + "(uid \(info.owner)); refusing", code: .permission)
        }
        do { try Sys.writeAll(fd, Array((request.line + "\n").utf8)) } catch {
            throw Failure(message: "\(path): \(describe(error.errno))", code: .unavailable)
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            guard Sys.wait([(fd, Int16(POLLIN))], timeout: .seconds(5))[0] != 0 else {
                throw Failure(message: "the master at \(path) did not answer within 5 s", code: .unavailable)
            }
            let count = buffer.withUnsafeMutableBytes { Sys.calls.read(fd, into: $0) }
            if count == -Int(EINTR) { continue }
            guard count > 0 else { break }
            answer += buffer[0..<count]
        }
        let text = String(decoding: answer, as: UTF8.self)
        if text.hasPrefix("error: ") {
            let message = String(text.dropFirst(7).prefix { $0 != "\n" })
            throw Failure(message: message, code: message.hasPrefix("permission denied") ? .permission : .unavailable)
        }
        if text.isEmpty { throw Failure(message: "the master at \(path) closed without answering", code: .unavailable) }
        return text
    }
}
