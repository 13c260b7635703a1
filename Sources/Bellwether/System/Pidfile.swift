#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// The master's pidfile.
///
/// At start the pid is written to a new file beside PATH, which the master
/// locks (a POSIX write lock, held until it exits) and renames over PATH: a
/// reader sees the old file or the whole new pid, never part of one. A PATH
/// that is a symbolic link is refused, never followed or replaced; one that
/// another process holds locked belongs to a running master, and the start is
/// refused naming the lock holder's pid (whatever the file says). An unlocked
/// PATH is a stale one, replaced. The check and the rename happen under an
/// flock of the directory, so two masters starting at once cannot both win.
/// At exit PATH is removed only if it is still the file this master wrote.
///
/// The lock is a POSIX one so that its holder's pid can be asked for; such a
/// lock ends when the process closes any descriptor of the file, so the
/// master never opens PATH again once it holds it.
final class Pidfile {
    let path: String
    private var fd: Int32 = -1
    private var identity: (device: UInt64, inode: UInt64)?

    init(path: String) { self.path = path }

    func write() throws(BellwetherError) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let directoryFD: Int32
        do { directoryFD = try Sys.openFile(directory, O_RDONLY | O_DIRECTORY) } catch {
            throw .cannotCreate(what: "pidfile", path: path, errno: error.errno)
        }
        defer { Sys.closeFile(directoryFD) }  // and with it the directory's flock
        _ = try? Sys.retrying("flock") { -Sys.calls.lock(directoryFD, wait: true) }

        try checkExisting()
        let pid = Sys.calls.processID()
        let temporary = path + ".\(pid).tmp"
        do throws(SystemCallError) {
            Sys.calls.unlink(temporary)
            fd = try Sys.openFile(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644)
            let holder = Sys.calls.recordLock(fd)
            if holder != 0 { throw SystemCallError(call: "lock", errno: holder > 0 ? EAGAIN : -holder) }
            try Sys.writeAll(fd, Array("\(pid)\n".utf8))
            let info = try Sys.calls.status(of: fd).get()
            _ = try Sys.retrying("rename") { -Sys.calls.rename(temporary, to: path) }
            identity = (info.device, info.inode)
        } catch {
            Sys.calls.unlink(temporary)
            close()
            throw .cannotCreate(what: "pidfile", path: path, errno: error.errno)
        }
    }

    /// Refuses a symbolic link, something other than a file, and a file
    /// another process holds locked.
    private func checkExisting() throws(BellwetherError) {
        let info: FileStatus
        switch Sys.calls.status(path, followLinks: false) {
        case .success(let found): info = found
        case .failure(let error) where error.errno == ENOENT: return
        case .failure(let error): throw .cannotCreate(what: "pidfile", path: path, errno: error.errno)
        }
        switch info.kind {
        case .symbolicLink: throw .unsafePidfile(path: path, reason: "is a symbolic link; refusing to follow it")
        case .file: break
        case .directory, .socket, .other: throw .unsafePidfile(path: path, reason: "is not a regular file")
        }
        let existing: Int32
        do { existing = try Sys.openFile(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) } catch {
            throw .cannotCreate(what: "pidfile", path: path, errno: error.errno)
        }
        defer { Sys.closeFile(existing) }
        let holder = Sys.calls.recordLockHolder(existing)
        if holder > 0 { throw .pidfileBusy(path: path, pid: holder) }
    }

    /// Removes PATH if it is still our file, and lets go of the lock.
    func remove() {
        if let identity, case .success(let info) = Sys.calls.status(path, followLinks: false),
           info.device == identity.device, info.inode == identity.inode {
            Sys.calls.unlink(path)
        }
        identity = nil
        close()
    }

    private func close() {
        if fd >= 0 { Sys.closeFile(fd) }
        fd = -1
    }

    static func read(_ path: String) -> Int32? {
        guard let bytes = try? Sys.readFile(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
    }

    /// Alive and not a zombie.
    static func isRunning(_ pid: Int32) -> Bool {
        guard pid > 0, [0, EPERM].contains(Sys.calls.kill(pid, 0)) else { return false }
        guard let stat = try? Sys.readFile("/proc/\(pid)/stat", limit: 512) else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return true }
        return !text[close...].hasPrefix(") Z")
    }
}
