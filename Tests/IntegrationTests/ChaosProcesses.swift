import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the chaos engine (and the binary hostile-input test) needs from the
/// system: files, /proc, spawning a master as a session leader, the control
/// socket. Every descriptor opened
/// here is close-on-exec, since other suites spawn processes concurrently
/// from the same test process.
enum ChaosOS {
    static func monotonic() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    static func readBytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { return result }
            result += buffer[0..<count]
        }
    }

    static func readText(_ path: String) -> String? { readBytes(path).map { String(decoding: $0, as: UTF8.self) } }

    static func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// Through a temporary file and rename, as an editor or a configuration
    /// manager does: the master never reads half a file.
    @discardableResult
    static func writeAtomically(_ text: String, to path: String) -> Bool {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return written == bytes.count && rename(temporary, path) == 0
    }

    /// Unbuffered, so that progress shows while the run goes on.
    static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            bytes = bytes.dropFirst(count)
        }
    }

    static func entries(_ directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }  // glibc opens it O_CLOEXEC
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Open descriptors of `pid`.
    static func descriptorCount(_ pid: Int32) -> Int? {
        guard access("/proc/\(pid)/fd", R_OK) == 0 else { return nil }
        return entries("/proc/\(pid)/fd").count
    }

    /// Resident set size of `pid` in KiB.
    static func residentKiB(_ pid: Int32) -> Int? {
        guard let status = readText("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ")[0])
    }

    /// Every process now, with its command line (NULs as spaces).
    static func processes() -> [ProcessEntry] {
        entries("/proc").compactMap { name in
            guard let pid = Int32(name), let stat = ProcStat(pid: pid) else { return nil }
            let bytes = readBytes("/proc/\(pid)/cmdline") ?? []
            return (pid, stat, String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self))
        }
    }

    /// posix_spawn of a master in a session of its own, so that its workers
    /// (which lead process groups, not sessions) carry its pid as their
    /// session id, even as zombies: that is how a worker is told from
    /// another master's. stdout and stderr go to `log`; the test process's
    /// BELLWETHER_* variables (the chaos settings among them) are not passed on.
    static func spawnSessionLeader(_ arguments: [String], log: String) -> Int32 {
        // Nothing of the test runner's (its sockets and pipes) is the master's business.
        Harness.spawn(arguments, stdout: log, stderr: log, appending: true, newSession: true, closeInherited: true)
    }

    private typealias Prctl = @convention(c) (CInt, CUnsignedLong, CUnsignedLong, CUnsignedLong, CUnsignedLong) -> CInt

    /// PR_SET_CHILD_SUBREAPER for the test process, so that the workers of a
    /// SIGKILLed master become our children and their zombies can be reaped
    /// (PID 1 here never reaps). prctl is variadic, which Swift cannot call;
    /// with integer arguments only, the fixed-argument call is the same on
    /// Linux x86_64 and aarch64.
    @discardableResult
    static func setChildSubreaper(_ on: Bool) -> Bool {
        guard let symbol = dlsym(nil, "prctl") else { return false }  // nil: RTLD_DEFAULT
        let prctl = unsafeBitCast(symbol, to: Prctl.self)
        return prctl(36 /* PR_SET_CHILD_SUBREAPER */, on ? 1 : 0, 0, 0, 0) == 0
    }

    /// `status json` over the master's control socket: the master's own view
    /// (wanted workers, generation, scheduler pid, one row per unreaped worker).
    static func status(socket path: String) -> [String: Any]? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var limit = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { return nil }
        let request = Array("status json\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return nil }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            answer += buffer[0..<count]
        }
        return (try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any]
    }
}

/// A process seen in /proc, with its command line (NULs as spaces).
typealias ProcessEntry = (pid: Int32, stat: ProcStat, commandLine: String)
