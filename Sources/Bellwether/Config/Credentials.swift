#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who the workers run as (--user, --group) and their umask (--umask). The
/// exec shim applies them in the worker, before the app runs; the master
/// keeps its own, to bind low ports and signal any worker.
public struct Credentials: Hashable, Sendable {
    /// nil: the master's.
    public var uid: UInt32?
    public var gid: UInt32?
    /// The supplementary groups: the user's groups in the group database, or
    /// only `gid`. nil: the master's.
    public var groups: [UInt32]?
    public var umask: UInt32?
    /// For --check-config and the log: what was asked for.
    public var userName: String?
    public var groupName: String?

    public static let unchanged = Credentials()

    /// The shim's CREDENTIALS argument: "-", or "UID:GID:GROUPS:UMASK" with
    /// "-" for a field left as it is.
    var shimArgument: String {
        guard self != .unchanged else { return "-" }
        func show(_ value: UInt32?) -> String { value.map { String($0) } ?? "-" }
        return show(uid) + ":" + show(gid) + ":" + (groups.map { $0.map(String.init).joined(separator: ",") } ?? "-")
            + ":" + (umask.map { String($0, radix: 8) } ?? "-")
    }

    var summary: String {
        var parts: [String] = []
        if let uid { parts.append("user = \(userName ?? String(uid)) (uid \(uid))") }
        if let gid {
            parts.append("group = \(groupName ?? String(gid)) (gid \(gid)"
                + (groups.map { ", groups " + $0.map(String.init).joined(separator: ",") } ?? "") + ")")
        }
        if let umask {
            let octal = String(umask, radix: 8)
            parts.append("umask = " + String(repeating: "0", count: max(0, 4 - octal.count)) + octal)
        }
        return parts.joined(separator: "\n")
    }

    /// Looks up --user and --group. Changing them needs a master running as root.
    static func resolve(_ settings: Settings) throws(BellwetherError) -> Credentials {
        var credentials = Credentials(umask: settings.umask.map { UInt32($0) })
        guard settings.user != nil || settings.group != nil else { return credentials }
        let asked = settings.user != nil ? "user" : "group"
        if geteuid() != 0 { throw .needsRoot(settings.source(asked), uid: geteuid()) }
        let user = settings.user.flatMap { Self.lookUpUser($0) }
        if let name = settings.user {
            guard let uid = user?.uid ?? Self.number(name) else {
                throw .invalidValue(settings.source("user"), value: name,
                                    expected: "a user name or uid in the user database")
            }
            credentials.uid = uid
            credentials.userName = user?.name ?? name
        }
        let gid: UInt32
        if let name = settings.group {
            guard let found = Self.lookUpGroup(name) else {
                throw .invalidValue(settings.source("group"), value: name,
                                    expected: "a group name or gid in the group database")
            }
            gid = found
            credentials.groupName = name
        } else if let user {
            gid = user.gid
        } else {  // a uid with no entry, and no --group
            throw .invalidValue(settings.source("user"), value: settings.user ?? "",
                                expected: "a user in the user database, or a uid with --group")
        }
        credentials.gid = gid
        credentials.groups = user.map { Self.groups(of: $0.name, gid: gid) } ?? [gid]
        return credentials
    }

    private static func number(_ text: String) -> UInt32? {
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt32(text)
    }

    /// The name of the user `uid`, if it has an entry (libpq's default user).
    static func userName(_ uid: UInt32) -> String? { lookUpUser(String(uid))?.name }

    /// A user by name, or by uid if it has an entry.
    private static func lookUpUser(_ name: String) -> (uid: UInt32, gid: UInt32, name: String)? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let status = if let uid = number(name) {
            getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
        } else {
            getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        }
        guard status == 0, result != nil else { return nil }
        return (entry.pw_uid, entry.pw_gid, String(cString: entry.pw_name))
    }

    /// A gid by group name, or the number given.
    private static func lookUpGroup(_ name: String) -> UInt32? {
        if let gid = number(name) { return gid }
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 65536)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// `gid` and every group that lists `user` as a member.
    private static func groups(of user: String, gid: UInt32) -> [UInt32] {
        var count: Int32 = 64
        while true {
            var list = [gid_t](repeating: 0, count: Int(count))
            let previous = count
            #if canImport(Glibc)
            let found = getgrouplist(user, gid, &list, &count)
            #else
            let found = list.withUnsafeMutableBufferPointer { buffer in
                buffer.withMemoryRebound(to: Int32.self) { getgrouplist(user, Int32(gid), $0.baseAddress, &count) }
            }
            #endif
            if found >= 0 { return Array(list.prefix(Int(count))).map { UInt32($0) } }
            if count <= previous { count = previous * 2 }
            if count > 65536 { return [gid] }
        }
    }
}
