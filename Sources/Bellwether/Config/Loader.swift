#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One setting from one layer, not yet applied.
struct Assignment {
    var spec: OptionSpec
    var value: String
    var source: SettingSource
}

/// What the command line asked for before any validation.
struct CommandLineRequest {
    var assignments: [Assignment] = []
    var command: [String] = []
    var help = false
    var version = false
}

/// Reads the layers and merges them: flags, then environment, then config
/// file, then defaults. The flag and environment layers are kept so that a
/// reload can re-read only the config file and merge again.
public struct SettingsLoader: Sendable {
    let flags: [Assignment]
    let environment: [Assignment]
    let command: [String]
    public let configPath: String?

    public enum Request: Sendable {
        case help
        case version
        case run(SettingsLoader)
    }

    /// Parses `arguments` (without the program name) and reads `environment`.
    public static func request(arguments: [String], environment: [String: String]) throws(BellwetherError) -> Request {
        let line = try parseCommandLine(arguments)
        if line.help { return .help }
        if line.version { return .version }
        let fromEnvironment = try readEnvironment(environment)
        var configPath: String?
        for assignment in fromEnvironment + line.assignments where assignment.spec.long == "config" {
            // Checked as the table checks it, before the file is read: `-c ""`
            // is a bad value, not a file that cannot be read.
            var checked = Settings()
            try assignment.spec.apply(&checked, assignment.value, assignment.source)
            configPath = checked.config
        }
        return .run(SettingsLoader(flags: line.assignments, environment: fromEnvironment,
                                   command: line.command, configPath: configPath))
    }

    /// Merges the layers, reading the config file (again) if there is one.
    public func load() throws(BellwetherError) -> Settings {
        var settings = Settings()
        let fromFile = try configPath.map { path throws(BellwetherError) in try Self.readConfigFile(path) } ?? []
        for assignment in fromFile + environment + flags {
            try assignment.spec.apply(&settings, assignment.value, assignment.source)
        }
        settings.command = command
        // An empty word (`bellwether -- "$APP"` with APP unset) is no command either.
        if command.first?.isEmpty ?? true { throw .missingCommand }
        return settings
    }

    static func parseCommandLine(_ arguments: [String]) throws(BellwetherError) -> CommandLineRequest {
        var request = CommandLineRequest()
        var index = 0
        func value(for spec: OptionSpec, inline: String?, shown: String) throws(BellwetherError) -> String {
            if spec.valueName == nil {
                if inline != nil { throw .unexpectedValue(shown) }
                return "true"
            }
            if let inline { return inline }
            index += 1
            guard index < arguments.count else { throw .missingValue(shown) }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                request.command = Array(arguments[(index + 1)...])
                break
            }
            let spec: OptionSpec
            let shown: String
            var inline: String?
            if argument.hasPrefix("--") {
                let body = argument.dropFirst(2)
                // The name ends at the first "=": "--=pidfile" names no option.
                let name = String(body.prefix { $0 != "=" })
                if let equals = body.firstIndex(of: "=") { inline = String(body[body.index(after: equals)...]) }
                shown = "--" + name
                guard let found = OptionSpec.named(name) else { throw .unknownOption(name.isEmpty ? argument : shown) }
                spec = found
            } else if argument.hasPrefix("-") && argument.count > 1 {
                let letter = argument[argument.index(after: argument.startIndex)]
                shown = "-" + String(letter)
                guard let found = OptionSpec.named(short: letter) else { throw .unknownOption(argument) }
                spec = found
                let rest = argument.dropFirst(2)
                if !rest.isEmpty {
                    guard found.valueName != nil else { throw .unknownOption(argument) }
                    inline = String(rest.hasPrefix("=") ? rest.dropFirst() : rest)
                }
            } else {
                request.command = Array(arguments[index...])
                break
            }
            let text = try value(for: spec, inline: inline, shown: shown)
            switch spec.long {
            case "help": request.help = true
            case "version": request.version = true
            default: request.assignments.append(Assignment(spec: spec, value: text, source: .flag(shown)))
            }
            index += 1
        }
        return request
    }

    static func readEnvironment(_ environment: [String: String]) throws(BellwetherError) -> [Assignment] {
        var assignments: [Assignment] = []
        for spec in OptionSpec.all {
            // Lowest precedence first, so that the highest is applied last.
            for name in spec.environmentNames.reversed() {
                guard let value = environment[name], !value.isEmpty else { continue }
                assignments.append(Assignment(spec: spec, value: value, source: .environment(name)))
            }
        }
        return assignments
    }

    /// The most a config file may hold: a longer one is refused, not cut.
    static let configLimit = 1 << 20

    static func readConfigFile(_ path: String) throws(BellwetherError) -> [Assignment] {
        let bytes: [UInt8]
        do { bytes = try Sys.readFile(path, limit: configLimit) } catch {
            throw .configUnreadable(path: path, errno: error.errno)
        }
        // readFile stops soon after the limit: the rest would go unread, unsaid.
        guard bytes.count <= configLimit else { throw .configUnreadable(path: path, errno: EFBIG) }
        var assignments: [Assignment] = []
        // Split on the scalar: "\r\n" is one Character, which "\n" does not match.
        let lines = String(decoding: bytes, as: UTF8.self).unicodeScalars
            .split(separator: "\n", omittingEmptySubsequences: false).map(Substring.init)
        for (offset, raw) in lines.enumerated() {
            let number = offset + 1
            // A NUL would cut a path or a value short where the system reads it.
            if raw.unicodeScalars.contains("\0") {
                throw .configSyntax(path: path, line: number, text: String(raw))
            }
            let line = trimmed(raw)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw .configSyntax(path: path, line: number, text: String(line))
            }
            let key = String(trimmed(line[..<equals]).map { $0 == "_" ? "-" : $0 })
            let value = unquoted(trimmed(line[line.index(after: equals)...]))
            guard !key.isEmpty else { throw .configSyntax(path: path, line: number, text: String(line)) }
            guard let spec = OptionSpec.named(key) else {
                throw .configUnknownKey(path: path, line: number, key: key)
            }
            guard spec.places.contains(.configFile) else {
                throw .configKeyNotAllowed(path: path, line: number, key: key)
            }
            assignments.append(Assignment(spec: spec, value: value,
                                          source: .configFile(path: path, line: number)))
        }
        return assignments
    }

    static func trimmed(_ text: Substring) -> Substring {
        var text = text
        while let first = text.first, first == " " || first == "\t" || first == "\r" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }

    static func unquoted(_ text: Substring) -> String {
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            return String(text.dropFirst().dropLast())
        }
        return String(text)
    }
}
