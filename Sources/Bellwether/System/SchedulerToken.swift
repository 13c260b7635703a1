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
            } else if case let made = Sys.calls.makeDirectory(directory, 0o700), made != 0 && made != EEXIST {
                throw .cannotCreate(what: "token directory", path: directory, errno: made)
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
            if !Sys.calls.isAccessible(path, F_OK) { try? prepare() }  // its directory was removed
            candidate = try Sys.openFile(path, O_RDWR | O_CREAT, mode: 0o600)
            if try Sys.tryLock(candidate), isStillThePath(candidate) {
                fd = candidate
                lastWasBusy = false
                return .acquired
            }
        } catch {
            if !lastWasBusy {
                logger.write(.tokenError(path: path, reason: "\(error)"))
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
        guard case .success(let opened) = Sys.calls.status(of: descriptor),
              case .success(let named) = Sys.calls.status(path, followLinks: true) else { return false }
        return opened.device == named.device && opened.inode == named.inode
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
        guard let target = Sys.calls.resolvedPath(path) else { return nil }
        let own = Sys.calls.processID()
        for pid in Sys.processes() where pid != own {
            for fdName in Sys.entries("/proc/\(pid)/fd") where Sys.calls.linkTarget("/proc/\(pid)/fd/\(fdName)") == target {
                return pid
            }
        }
        #endif
        return nil
    }
}
