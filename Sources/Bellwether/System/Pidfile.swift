#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The master's pidfile: written at start (atomically, by rename), removed at
/// exit only if it still names this master.
struct Pidfile {
    let path: String

    func write() throws(BellwetherError) {
        if let pid = Self.read(path), pid != getpid(), Self.isRunning(pid) {
            throw .pidfileBusy(path: path, pid: pid)
        }
        let temporary = path + ".\(getpid()).tmp"
        do {
            let fd = try Sys.openFile(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
            defer { Sys.closeFile(fd) }
            try Sys.writeAll(fd, Array("\(getpid())\n".utf8))
            try Sys.retrying("rename") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw .cannotCreate(what: "pidfile", path: path, errno: error.errno)
        }
    }

    func remove() {
        if Self.read(path) == getpid() { unlink(path) }
    }

    static func read(_ path: String) -> Int32? {
        guard let bytes = try? Sys.readFile(path, limit: 64) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
    }

    /// Alive and not a zombie.
    static func isRunning(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? Sys.readFile("/proc/\(pid)/stat", limit: 512) else { return true }
        let text = String(decoding: stat, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return true }
        return !text[close...].hasPrefix(") Z")
    }
}
