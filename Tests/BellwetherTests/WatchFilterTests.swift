import Testing
@testable import Bellwether

/// What --watch counts as a change: globs on one name, the defaults, and
/// the events as the kernel writes them.
@Suite("Watch filter")
struct WatchFilterTests {
    @Test(arguments: [
        ("*.py", "app.py", true), ("*.py", "app.pyc", false), ("*.py", ".py", true), ("*", "", true),
        ("?.py", "a.py", true), ("?.py", "ab.py", false), ("[ab].py", "b.py", true), ("[!ab].py", "b.py", false),
        ("[a-c]x", "bx", true), ("[a-c]x", "dx", false), ("*~", "app.py~", true), (".*.sw?", ".app.py.swp", true),
        ("a*b*c", "aXbYc", true), ("a*b*c", "aXbY", false), ("[", "[", true), ("[]]", "]", true),
    ])
    func globs(_ glob: String, _ name: String, _ matched: Bool) {
        #expect(WatchFilter.matches(glob, name) == matched, "\(glob) on \(name)")
    }

    @Test func theDefaultsCountPythonAndSkipCachesVersionControlAndEditorFiles() {
        let filter = WatchFilter()
        #expect(filter.counts(file: "views.py", named: false))
        for name in ["views.pyc", ".views.py.swp", "views.py~", "4913", ".#views.py", "notes.txt"] {
            #expect(!filter.counts(file: name, named: false), "\(name)")
        }
        for name in ["__pycache__", ".git", ".hg", "node_modules"] { #expect(filter.skips(directory: name)) }
        #expect(!filter.skips(directory: "templates"))
        // A file --watch named counts whatever its name, unless excluded.
        #expect(filter.counts(file: "settings.toml", named: true))
        #expect(!filter.counts(file: ".settings.toml.swp", named: true))
    }

    @Test func givenGlobsAddToTheDefaults() {
        let filter = WatchFilter(include: ["*.html"], exclude: ["generated_*.py"])
        #expect(filter.counts(file: "index.html", named: false))
        #expect(filter.counts(file: "views.py", named: false))
        #expect(!filter.counts(file: "generated_models.py", named: false))
        #expect(!filter.counts(file: "views.pyc", named: false))
    }

    @Test func optionsAreRepeatable() throws {
        guard case .run(let loader) = try SettingsLoader.request(
            arguments: ["--watch", "src", "--watch", "conf.toml", "--watch-include", "*.html", "--watch-exclude", "tmp",
                        "--", "app"], environment: [:]) else { Issue.record("not a run"); return }
        let settings = try loader.load()
        #expect(settings.watch.map(\.path) == ["src", "conf.toml"])
        #expect(settings.watchInclude == ["*.html"])
        #expect(settings.watchExclude == ["tmp"])
    }

    @Test func eventsAreReadAsTheKernelWritesThem() {
        func event(_ wd: Int32, _ mask: UInt32, _ name: String?) -> [UInt8] {
            var padded = Array((name ?? "").utf8)
            if name != nil { padded += [UInt8](repeating: 0, count: 16 - padded.count % 16) }
            var bytes: [UInt8] = []
            for word in [UInt32(bitPattern: wd), mask, 0, UInt32(padded.count)] {
                withUnsafeBytes(of: word) { bytes += $0 }
            }
            return bytes + padded
        }
        let bytes = event(1, InotifyEvent.created, "views.py") + event(2, InotifyEvent.ignored, nil)
            + event(3, InotifyEvent.created | InotifyEvent.isDirectory, "package")
        #expect(InotifyEvent.parse(bytes[...]) == [
            InotifyEvent(wd: 1, mask: InotifyEvent.created, name: "views.py"),
            InotifyEvent(wd: 2, mask: InotifyEvent.ignored, name: nil),
            InotifyEvent(wd: 3, mask: InotifyEvent.created | InotifyEvent.isDirectory, name: "package"),
        ])
        // A read cut short yields the whole events only.
        #expect(InotifyEvent.parse(bytes[..<(bytes.count - 4)]).count == 2)
    }
}
