/// `--preload MODULES`: what a generation's fork server runs
/// (`share/bellwether/forkserver.py`). The command must be Python: an
/// interpreter with a script or `-m MODULE`, or a script (a console script
/// such as gunicorn's included) whose `#!` line names one.
public struct PythonPreload: Hashable, Sendable {
    /// The interpreter the fork server runs in, absolute.
    public var interpreter: String
    /// The fork server's APP: a script's path, `-m MODULE`, or a console script's path, and their arguments.
    public var app: [String]
    /// Imported once by the fork server, before any worker is forked.
    public var modules: [String]

    /// `value`: "MODULE[,MODULE...]", "@FILE" (one module per line, `#`
    /// comments) or "-" (only the console script's own modules). `command`:
    /// argv as given; `executable`: its first word, resolved. `path`: the
    /// workers' PATH, for `#!/usr/bin/env python3`.
    static func resolve(_ value: String, source: SettingSource, command: [String], executable: String,
                        path: String, directory: String) throws(BellwetherError) -> PythonPreload {
        let modules = try moduleList(value, source: source, directory: directory)
        let arguments = Array(command.dropFirst())
        if isInterpreterName(executable) {
            guard let first = arguments.first else {
                throw .preloadRefused(source, reason: "\(echoed(command[0])) needs a script or -m MODULE to run")
            }
            if first.hasPrefix("-") && first != "-m" {
                throw .preloadRefused(source, reason: "Python's own options (\(echoed(first))) are not supported "
                    + "with --preload: give a script or -m MODULE right after the interpreter (PYTHONUNBUFFERED=1 "
                    + "and the like set what -u and -X do)")
            }
            // The fork server takes a bare name for a console script's: a script is given by its path.
            let script = first == "-m" || first.hasPrefix("/") ? first : directory + "/" + first
            return PythonPreload(interpreter: executable, app: [script] + arguments.dropFirst(), modules: modules)
        }
        guard let line = shebang(executable) else {
            throw .preloadRefused(source, reason: "\(echoed(command[0])) is not a Python command: --preload needs "
                + "a python interpreter, or a script whose #! line names one")
        }
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if let first = words.first, first.hasSuffix("/env") {
            words.removeFirst()
            if words.first == "-S" { words.removeFirst() }
        }
        guard let name = words.first, isInterpreterName(name), words.count == 1 else {
            throw .preloadRefused(source, reason: "\(echoed(command[0])) is not a Python command: its #! line is "
                + "\(echoedQuoted(line)), and --preload needs a python interpreter there (without options)")
        }
        let interpreter: String
        if name.hasPrefix("/") {
            interpreter = name
        } else {
            do { interpreter = try CommandResolver.resolve(name, path: path, directory: directory, as: nil) } catch {
                throw .preloadRefused(source, reason: "\(echoed(command[0]))'s #! line names \(echoed(name)), "
                    + "which is not in the workers' PATH")
            }
        }
        if let problem = CommandResolver.problem(interpreter) {
            throw .preloadRefused(source, reason: "\(echoed(interpreter)), the interpreter of \(echoed(command[0])), "
                + "cannot be executed: \(CommandResolver.reason(problem))")
        }
        return PythonPreload(interpreter: interpreter, app: [executable] + arguments, modules: modules)
    }

    /// python, python3, python3.11, pypy3 …, by the last path component.
    static func isInterpreterName(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        for prefix in ["python", "pypy"] where name.hasPrefix(prefix) {
            return name.dropFirst(prefix.count).allSatisfy { $0.isNumber || $0 == "." }
        }
        return false
    }

    /// The `#!` line of a script, without the `#!`; nil for anything else.
    static func shebang(_ path: String) -> String? {
        guard let bytes = try? Sys.readFile(path, limit: 512), bytes.starts(with: Array("#!".utf8)) else { return nil }
        let line = bytes.dropFirst(2).prefix { $0 != UInt8(ascii: "\n") }
        return String(SettingsLoader.trimmed(Substring(String(decoding: line, as: UTF8.self))))
    }

    static func moduleList(_ value: String, source: SettingSource,
                           directory: String) throws(BellwetherError) -> [String] {
        var names: [String]
        if value == "-" {
            names = []
        } else if value.hasPrefix("@") {
            let file = String(value.dropFirst())
            if file.isEmpty { throw .invalidValue(source, value: value, expected: "@ followed by a file's path") }
            let absolute = file.hasPrefix("/") ? file : directory + "/" + file
            let bytes: [UInt8]
            do { bytes = try Sys.readFile(absolute) } catch {
                throw .preloadRefused(source, reason: "\(echoed(file)): \(describe(error.errno))")
            }
            names = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { line in
                String(SettingsLoader.trimmed(line.prefix { $0 != "#" }))
            }.filter { !$0.isEmpty }
        } else {
            names = value.split(separator: ",", omittingEmptySubsequences: false).map {
                String(SettingsLoader.trimmed($0))
            }
        }
        for name in names where !isModuleName(name) {
            throw .invalidValue(source, value: name, expected: "module names such as flask or myapp.models, "
                + "separated by commas, @FILE or -")
        }
        return names
    }

    static func isModuleName(_ name: String) -> Bool {
        !name.isEmpty && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.first, first == "_" || (first.isASCII && first.isLetter) else { return false }
            return part.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }
        }
    }
}
