/// Which names under `--watch` count as a change. Globs (`*`, `?`, `[a-z]`,
/// `[!…]`) are matched against one name, never a path: an excluded name is
/// a file ignored or a directory not entered (nor watched); a file counts
/// when its name is included, or when `--watch` named that file itself.
public struct WatchFilter: Hashable, Sendable {
    public static let defaultInclude = ["*.py"]
    /// Byte-code and caches, version control, and what editors write beside
    /// a file they save (vim's `.x.swp` and its `4913` probe, `x~`, emacs's `.#x`).
    public static let defaultExclude = ["__pycache__", "*.pyc", "*.pyo", ".git", ".hg", "node_modules",
                                        ".*.swp", ".*.swx", ".*.swo", "*~", "4913", ".#*"]

    public var include: [String]
    public var exclude: [String]

    /// The given globs are added to the defaults.
    public init(include: [String] = [], exclude: [String] = []) {
        self.include = Self.defaultInclude + include
        self.exclude = Self.defaultExclude + exclude
    }

    /// A directory not to enter.
    public func skips(directory name: String) -> Bool { exclude.contains { Self.matches($0, name) } }

    /// A change to the file `name` reloads: `named` when --watch named the file itself.
    public func counts(file name: String, named: Bool) -> Bool {
        if exclude.contains(where: { Self.matches($0, name) }) { return false }
        return named || include.contains { Self.matches($0, name) }
    }

    /// fnmatch(3) without flags, on one name.
    public static func matches(_ glob: String, _ name: String) -> Bool {
        matches(Array(glob.unicodeScalars)[...], Array(name.unicodeScalars)[...])
    }

    private static func matches(_ glob: ArraySlice<Unicode.Scalar>, _ name: ArraySlice<Unicode.Scalar>) -> Bool {
        var glob = glob
        var name = name
        while let first = glob.first {
            switch first {
            case "*":
                glob = glob.dropFirst()
                while glob.first == "*" { glob = glob.dropFirst() }
                if glob.isEmpty { return true }
                var rest = name
                while true {
                    if matches(glob, rest) { return true }
                    guard !rest.isEmpty else { return false }
                    rest = rest.dropFirst()
                }
            case "?":
                guard !name.isEmpty else { return false }
                glob = glob.dropFirst()
                name = name.dropFirst()
            case "[":
                guard let character = name.first else { return false }
                guard let (matched, after) = bracket(glob.dropFirst(), character) else {
                    // An unclosed "[" is a plain character.
                    guard character == "[" else { return false }
                    glob = glob.dropFirst()
                    name = name.dropFirst()
                    continue
                }
                guard matched else { return false }
                glob = after
                name = name.dropFirst()
            default:
                guard name.first == first else { return false }
                glob = glob.dropFirst()
                name = name.dropFirst()
            }
        }
        return name.isEmpty
    }

    /// A bracket expression after its "[": whether `character` is in it, and
    /// the glob after its "]"; nil when it is not closed.
    private static func bracket(_ glob: ArraySlice<Unicode.Scalar>, _ character: Unicode.Scalar)
        -> (Bool, ArraySlice<Unicode.Scalar>)?
    {
        var rest = glob
        let negated = rest.first == "!" || rest.first == "^"
        if negated { rest = rest.dropFirst() }
        var found = false
        var first = true
        while let scalar = rest.first {
            if scalar == "]" && !first { return (found != negated, rest.dropFirst()) }
            first = false
            rest = rest.dropFirst()
            if rest.first == "-", rest.count >= 2, let upper = rest.dropFirst().first, upper != "]" {
                if (scalar...upper).contains(character) { found = true }
                rest = rest.dropFirst(2)
            } else if scalar == character {
                found = true
            }
        }
        return nil
    }
}

/// A --watch path, absolute, and whether it is a directory (watched with
/// everything under it) or a file (watched itself).
public struct WatchTarget: Hashable, Sendable {
    public var path: String
    public var isDirectory: Bool

    /// Each path must exist when the master starts: a typo would otherwise
    /// watch nothing without a word. Off Linux, --watch is refused.
    static func resolve(_ entries: [WatchEntry], directory: String) throws(BellwetherError) -> [WatchTarget] {
        guard let first = entries.first else { return [] }
        #if !os(Linux)
        throw .watchUnsupported(first.source)
        #else
        _ = first
        return try entries.map { entry throws(BellwetherError) in
            let path = entry.path.hasPrefix("/") ? entry.path : directory + "/" + entry.path
            switch Sys.calls.status(path, followLinks: true) {
            case .success(let status): return WatchTarget(path: path, isDirectory: status.kind == .directory)
            case .failure(let error): throw .directoryUnusable(entry.source, path: entry.path, errno: error.errno)
            }
        }
        #endif
    }
}
