#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The scheduler token: an flock on a file. The master takes it, passes the
/// locked descriptor to the scheduler's guard only (the app never sees it),
/// and closes its own copy; the guard exits only once the scheduler's whole
/// tree is gone, so the lock lives exactly as long as that tree. A master
/// that finds it taken waits: an old scheduler's tree, or another
/// supervisor's scheduler, still runs.
final class SchedulerToken {
    let path: String
    /// The default location (not one the user chose with --lease): its
    /// directory must be ours alone, or another user could hold the lock.
    let privateDirectory: Bool
    private(set) var fd: Int32 = -1
    private var lastWasBusy = false

    init(path: String, privateDirectory: Bool) {
        self.path = path
        self.privateDirectory = privateDirectory
    }

    /// Creates the token's directory and file, so that a bad path fails at start.
    func prepare() throws(BellwetherError) {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            let directory = String(path[..<slash])
            if privateDirectory {
                try Sys.preparePrivateDirectory(directory)
            } else if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw .cannotCreate(what: "token directory", path: directory, errno: errno)
            }
        }
        do { Sys.closeFile(try Sys.openFile(path, O_RDWR | O_CREAT, mode: 0o600)) } catch {
            throw .cannotCreate(what: "scheduler token", path: path, errno: error.errno)
        }
    }

    func acquire(logger: Logger) -> TokenAnswer {
        if fd >= 0 { return .acquired }
        var candidate: Int32 = -1
        do {
            if access(path, F_OK) != 0 { try? prepare() }  // its directory was removed
            candidate = try Sys.openFile(path, O_RDWR | O_CREAT, mode: 0o600)
            if try Sys.tryLock(candidate), isStillThePath(candidate) {
                fd = candidate
                lastWasBusy = false
                return .acquired
            }
        } catch {
            if !lastWasBusy {
                logger.write(LogRecord(.error, "token_error", "scheduler token \(path): \(error)"))
            }
        }
        if candidate >= 0 { Sys.closeFile(candidate) }
        // Finding the holder scans /proc: do it once per wait, not per retry.
        defer { lastWasBusy = true }
        return .busy(holder: lastWasBusy ? nil : holder())
    }

    /// Whether the locked descriptor is still the file at `path`: if the file
    /// was removed and created again, an old scheduler may hold the old one.
    private func isStillThePath(_ descriptor: Int32) -> Bool {
        var opened = stat(), named = stat()
        guard fstat(descriptor, &opened) == 0, stat(path, &named) == 0 else { return false }
        return opened.st_dev == named.st_dev && opened.st_ino == named.st_ino
    }

    /// The master's copy is no longer needed: the scheduler holds the lock now,
    /// or the master gives it up.
    func release() {
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
    }

    /// A process that has the token file open, found through /proc.
    func holder() -> Int32? {
        #if os(Linux)
        guard let resolved = realpath(path, nil) else { return nil }
        let target = String(cString: resolved)
        free(resolved)
        let own = getpid()
        for pid in Sys.processes() where pid != own {
            for fdName in Sys.entries("/proc/\(pid)/fd") {
                var buffer = [CChar](repeating: 0, count: 4096)
                let length = readlink("/proc/\(pid)/fd/\(fdName)", &buffer, buffer.count - 1)
                if length > 0 && String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) == target {
                    return pid
                }
            }
        }
        #endif
        return nil
    }
}
