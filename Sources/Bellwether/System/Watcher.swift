#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--watch`: an inotify descriptor, one more entry of the master's poll.
/// Nothing wakes the master while nothing changes: there is no timer until
/// a change arrives, and then one deadline, `debounce` (0.2 s,
/// `Timings.watchDebounce`) after the last change,
/// so that an editor's save-by-rename or a checkout of many files is one reload.
///
/// inotify watches directories, not files: a tree costs one watch per
/// directory (excluded ones are not entered), and a directory created later
/// is watched as it appears. Symbolic links to directories are not followed.
/// A file named by --watch is watched itself, and again after an editor
/// replaced it. Past `fs.inotify.max_user_watches`, one warning says so and
/// the rest is not watched.
final class Watcher {
    let debounce: Duration
    let fd: Int32
    private let filter: WatchFilter
    private let logger: Logger
    /// Watch descriptor → watched directory.
    private var directories: [Int32: String] = [:]
    /// Watch descriptor → a file --watch named.
    private var files: [Int32: String] = [:]
    /// Named files whose watch went with the file (replaced by rename,
    /// deleted): watched again when the reload is due.
    private var lost: Set<String> = []
    private let targets: [WatchTarget]
    /// The watch limit was reached: nothing more is added.
    private var full = false
    private var overflowed = false
    /// When the reload is due: set by a change, nil while nothing changed.
    private(set) var deadline: Instant?
    /// The last path that changed, and every one since the last reload.
    private var lastChange: String?
    private var changed: Set<String> = []
    /// Changes counted ever: a drain that counted none leaves the deadline be.
    private var total = 0

    var watchedDirectories: Int { directories.count }
    var pollEntry: (fd: Int32, events: Int16) { (fd, Int16(POLLIN)) }

    init(targets: [WatchTarget], filter: WatchFilter, debounce: Duration, logger: Logger) throws(BellwetherError) {
        let fd = Sys.calls.openInotify()
        guard fd >= 0 else { throw .system(call: "inotify_init1", errno: -fd) }
        self.fd = fd
        self.debounce = debounce
        self.filter = filter
        self.logger = logger
        self.targets = targets
        for target in targets {
            if target.isDirectory { _ = addTree(target.path) } else { addFile(target.path) }
        }
    }

    /// Reads every pending event; a change that counts (re)sets the deadline.
    func drain(at now: Instant) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let before = total
        while true {
            let count = buffer.withUnsafeMutableBytes { Sys.calls.read(fd, into: $0) }
            if count == -Int(EINTR) { continue }
            guard count > 0 else { break }
            for event in InotifyEvent.parse(buffer[..<count]) { handle(event) }
        }
        if total != before { deadline = now + debounce }
    }

    /// When the deadline has passed: the last path that changed and how many
    /// did; the watcher is ready for the next ones.
    func due(at now: Instant) -> (path: String, count: Int)? {
        guard let deadline, now >= deadline else { return nil }
        self.deadline = nil
        defer { lastChange = nil; changed = [] }
        for path in lost {
            lost.remove(path)
            addFile(path)
        }
        if overflowed {
            overflowed = false
            for target in targets where target.isDirectory { _ = addTree(target.path) }
        }
        return (lastChange ?? "?", changed.count)
    }

    private func handle(_ event: InotifyEvent) {
        if event.mask & InotifyEvent.overflow != 0 {
            overflowed = true
            counted("(events lost: the kernel's queue overflowed)")
            return
        }
        if let file = files[event.wd] {
            if event.mask & InotifyEvent.ignored != 0 {
                files[event.wd] = nil
                lost.insert(file)
            }
            counted(file)
            return
        }
        guard let directory = directories[event.wd] else { return }
        if event.mask & InotifyEvent.ignored != 0 {
            directories[event.wd] = nil
            return
        }
        guard let name = event.name else { return }
        let path = directory + "/" + name
        if event.mask & InotifyEvent.isDirectory != 0 {
            guard !filter.skips(directory: name) else { return }
            if event.mask & (InotifyEvent.created | InotifyEvent.movedTo) != 0 {
                // Files written before its watch was in place count now.
                if addTree(path) { counted(path) }
            } else if event.mask & InotifyEvent.movedFrom != 0 {
                counted(path)
            }
            return
        }
        if filter.counts(file: name, named: false) { counted(path) }
    }

    private func counted(_ path: String) {
        lastChange = path
        changed.insert(path)
        total += 1
    }

    private func addFile(_ path: String) {
        guard !full else { return }
        let wd = Sys.calls.addWatch(fd, path, directory: false)
        if wd >= 0 { files[wd] = path } else if !refused(path, errno: -wd) { lost.insert(path) }
    }

    /// Watches `root` and every directory under it not excluded; true when
    /// an included file was found in it.
    private func addTree(_ root: String) -> Bool {
        var pending = [root]
        var found = false
        while let directory = pending.popLast(), !full {
            let wd = Sys.calls.addWatch(fd, directory, directory: true)
            guard wd >= 0 else {
                _ = refused(directory, errno: -wd)
                continue
            }
            directories[wd] = directory
            for name in Sys.entries(directory) {
                let path = directory + "/" + name
                guard case .success(let status) = Sys.calls.status(path, followLinks: false) else { continue }
                switch status.kind {
                case .directory where !filter.skips(directory: name): pending.append(path)
                case .file where filter.counts(file: name, named: false): found = true
                default: break
                }
            }
        }
        return found
    }

    /// Logs a watch the kernel refused; true when it is for good (the
    /// limit, a permission), false when the path is just gone.
    private func refused(_ path: String, errno code: Int32) -> Bool {
        switch code {
        case ENOENT, ENOTDIR: return false
        case ENOSPC:
            full = true
            logger.write(.watchLimit(path: path, watched: directories.count + files.count))
        default:
            logger.write(.watchFailed(path: path, error: describe(code)))
        }
        return true
    }
}

/// One `struct inotify_event` as read from the descriptor.
struct InotifyEvent: Hashable, Sendable {
    // The kernel's values (linux/inotify.h), the same on every architecture.
    static let movedFrom: UInt32 = 0x40
    static let movedTo: UInt32 = 0x80
    static let created: UInt32 = 0x100
    static let overflow: UInt32 = 0x4000
    static let ignored: UInt32 = 0x8000
    static let isDirectory: UInt32 = 0x4000_0000

    var wd: Int32
    var mask: UInt32
    /// The entry's name, for an event about an entry of a watched directory.
    var name: String?

    /// The events in what one read returned: a 16-byte header (wd, mask,
    /// cookie, len), then `len` bytes of NUL-padded name.
    static func parse(_ bytes: ArraySlice<UInt8>) -> [InotifyEvent] {
        var events: [InotifyEvent] = []
        var offset = bytes.startIndex
        // Native byte order: the kernel writes the struct as this machine lays it out.
        func word(_ at: Int) -> UInt32 {
            bytes[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        }
        while offset + 16 <= bytes.endIndex {
            let length = Int(word(offset + 12))
            guard offset + 16 + length <= bytes.endIndex else { break }
            let nameBytes = bytes[(offset + 16)..<(offset + 16 + length)].prefix { $0 != 0 }
            events.append(InotifyEvent(wd: Int32(bitPattern: word(offset)), mask: word(offset + 4),
                                       name: nameBytes.isEmpty ? nil : String(decoding: nameBytes, as: UTF8.self)))
            offset += 16 + length
        }
        return events
    }
}
