#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// What the workers' user (--user, with its gid and groups) may do with a
/// path, judged in the master before any worker starts: the master runs as
/// root, whose own access() says yes, and a worker that cannot execute its
/// command would only crash-loop with 126. The mode bits are read as the
/// kernel reads them — the owner's for the owner, the group's for a member of
/// the file's group, the others' for everyone else — with search permission
/// needed on every directory on the way. A path with a POSIX ACL, or one the
/// master cannot stat, is not judged (its bits do not tell the whole answer):
/// every refusal is one the kernel would make.
public struct WorkerAccess {
    public enum Permission: Hashable, Sendable {
        case search, read, execute

        var bit: mode_t { self == .read ? 4 : 1 }
    }

    /// The first thing on the way that the user may not do.
    public indirect enum Denial: Hashable, Sendable {
        case denied(Permission, path: String)
        /// A `#!` script whose interpreter the user may not execute.
        case interpreter(String, Denial)
    }

    let uid: uid_t
    let groups: Set<gid_t>
    /// For messages: the user as given or found.
    let user: String

    /// nil when the workers keep the master's uid (no --user, or root's):
    /// they may do what the master may.
    init?(_ credentials: Credentials) {
        guard let uid = credentials.uid, uid != 0 else { return nil }
        self.uid = uid
        groups = Set((credentials.groups ?? []) + [credentials.gid].compactMap { $0 })
        user = credentials.userName ?? String(uid)
    }

    /// The first directory on the way to the absolute `path` that the user may
    /// not search: on the path as written, and on the one its symbolic links
    /// lead to.
    func unreachable(_ path: String) -> Denial? {
        var ways = [path]
        if let real = realpath(path, nil) {
            ways.append(String(cString: real))
            free(real)
        }
        for way in ways {
            let components = way.split(separator: "/")
            for depth in 0..<components.count {
                let directory = "/" + components[..<depth].joined(separator: "/")
                if !allows(directory, .search) { return .denied(.search, path: directory) }
            }
        }
        return nil
    }

    /// nil when the user may reach `path` and has `permission` on it.
    func denial(_ path: String, _ permission: Permission) -> Denial? {
        if let denial = unreachable(path) { return denial }
        return allows(path, permission) ? nil : .denied(permission, path: path)
    }

    /// nil when the user may execute `path`: reach and execute it and, if it
    /// is a `#!` script, read it and execute its interpreter, as deep as the
    /// kernel follows interpreters.
    func executionDenial(_ path: String, depth: Int = 0) -> Denial? {
        if let denial = denial(path, .execute) { return denial }
        guard depth < 4, let interpreter = Self.interpreter(of: path) else { return nil }
        if !allows(path, .read) { return .denied(.read, path: path) }
        return executionDenial(interpreter, depth: depth + 1).map { .interpreter(interpreter, $0) }
    }

    /// The absolute interpreter path a `#!` line names, within the 256 bytes
    /// the kernel reads.
    static func interpreter(of path: String) -> String? {
        guard let head = try? Sys.readFile(path, limit: 256), head.starts(with: Array("#!".utf8)) else { return nil }
        let separators: [UInt8] = [0x20, 0x09, 0x0a, 0x00]
        let name = head.prefix(256).dropFirst(2).drop { $0 == 0x20 || $0 == 0x09 }.prefix { !separators.contains($0) }
        return name.first == UInt8(ascii: "/") ? String(decoding: name, as: UTF8.self) : nil
    }

    /// What the mode bits give the user: the owner's, the group's or the others'.
    private func allows(_ path: String, _ permission: Permission) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, bw_has_access_acl(path) == 0 else { return true }
        let shift: mode_t = info.st_uid == uid ? 6 : groups.contains(info.st_gid) ? 3 : 0
        return (info.st_mode >> shift) & permission.bit != 0
    }
}
