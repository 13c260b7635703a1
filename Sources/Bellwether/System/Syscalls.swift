#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// A failed system call: which one, and errno.
public struct SystemCallError: Error, Hashable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var description: String { "\(call): \(describe(errno))" }
}

/// strerror, as a Swift string.
func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

/// The thin layer every system call of the shell goes through: each wrapper
/// retries EINTR here, in one place, and throws `SystemCallError` otherwise.
enum Sys {
    @discardableResult
    static func retrying(_ call: String, _ body: () -> Int32) throws(SystemCallError) -> Int32 {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = errno
            if code != EINTR { throw SystemCallError(call: call, errno: code) }
        }
    }

    static func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemCallError) -> Int32 {
        try retrying("open \(path)") { open(path, flags | O_CLOEXEC, mode) }
    }

    static func closeFile(_ fd: Int32) { _ = close(fd) }

    /// Creates the runtime `directory` 0700 if missing; it must then be this
    /// user's and writable by nobody else, or another user could replace the
    /// control socket or the scheduler token in it.
    static func preparePrivateDirectory(_ directory: String) throws(BellwetherError) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .cannotCreate(what: "runtime directory", path: directory, errno: errno)
        }
        var info = stat()
        if lstat(directory, &info) != 0 || (info.st_mode & S_IFMT) != S_IFDIR || info.st_uid != geteuid()
            || info.st_mode & 0o022 != 0 {
            throw .unsafeDirectory(path: directory)
        }
    }

    /// Sends a signal; a process that is already gone is not an error.
    static func send(_ signal: Signal, to pid: Int32) {
        _ = kill(pid, signal.rawValue)
    }

    /// flock(LOCK_EX|LOCK_NB): true when taken, false when someone else holds it.
    static func tryLock(_ fd: Int32) throws(SystemCallError) -> Bool {
        do {
            try retrying("flock") { flock(fd, LOCK_EX | LOCK_NB) }
            return true
        } catch where error.errno == EWOULDBLOCK {
            return false
        }
    }

    /// One non-blocking waitpid(-1): nil when no child has changed state.
    static func reapOne() -> (pid: Int32, status: ExitStatus)? {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 { return (pid, decode(status)) }
            if pid == -1 && errno == EINTR { continue }
            return nil
        }
    }

    /// This process's children, zombies included: from the kernel's list
    /// (/proc/PID/task/PID/children) or, where it has none, a scan of /proc.
    static func children() -> [Int32] {
        #if os(Linux)
        let own = getpid()
        if let list = try? readFile("/proc/\(own)/task/\(own)/children") {
            return list.split(separator: UInt8(ascii: " ")).compactMap { Int32(String(decoding: $0, as: UTF8.self)) }
        }
        return processes().filter { pid in
            guard let stat = try? readFile("/proc/\(pid)/stat", limit: 4096),
                  let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return false }
            let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
            return fields.count > 1 && Int32(String(decoding: fields[1], as: UTF8.self)) == own
        }
        #else
        return []
        #endif
    }

    /// The entries of a directory (names, "." and ".." left out).
    static func entries(_ directory: String) -> [String] {
        guard let listing = opendir(directory) else { return [] }
        defer { closedir(listing) }
        var names: [String] = []
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Every process's pid, from /proc.
    static func processes() -> [Int32] { entries("/proc").compactMap { Int32($0) } }

    static func decode(_ status: Int32) -> ExitStatus {
        if bw_wifsignaled(status) != 0 {
            return .signaled(Signal(rawValue: bw_wtermsig(status)), coreDumped: bw_wcoredump(status) != 0)
        }
        return .exited(bw_wifexited(status) != 0 ? bw_wexitstatus(status) : -1)
    }

    /// Waits for any of the `events` on its descriptor, or until `timeout`
    /// passes (nil: forever); returns each descriptor's `revents`.
    static func wait(_ fds: [(fd: Int32, events: Int16)], timeout: Duration?) -> [Int16] {
        var entries = fds.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
        var milliseconds: Int32 = -1
        if let timeout {
            // Round up, so that the loop never wakes just before a deadline.
            let ms = (max(timeout.nanoseconds, 0) + 999_999) / 1_000_000
            milliseconds = Int32(clamping: ms)
        }
        if poll(&entries, nfds_t(entries.count), milliseconds) <= 0 { return entries.map { _ in 0 } }
        return entries.map(\.revents)
    }

    static func monotonicNow() -> Instant {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Instant(nanoseconds: Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec))
    }

    /// send(2) on a socket whose peer may have gone: an error, never SIGPIPE.
    /// Returns the count sent, or -1 with errno set.
    static func sendWithoutSignal(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        #if os(Linux)
        return Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        #else
        return Darwin.send(fd, bytes.baseAddress, bytes.count, 0)
        #endif
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "write", errno: errno)
            }
            offset += written
        }
    }

    /// The whole content of a small file.
    static func readFile(_ path: String, limit: Int = 1 << 20) throws(SystemCallError) -> [UInt8] {
        let fd = try openFile(path, O_RDONLY)
        defer { closeFile(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count <= limit {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "read \(path)", errno: errno)
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }

    static func isDirectory(_ path: String) -> Int32? {
        var info = stat()
        if stat(path, &info) != 0 { return errno }
        return (info.st_mode & S_IFMT) == S_IFDIR ? nil : ENOTDIR
    }

    static func currentDirectory() -> String {
        guard let pointer = getcwd(nil, 0) else { return "/" }
        defer { free(pointer) }
        return String(cString: pointer)
    }

    static func environment() -> [String] {
        var result: [String] = []
        #if canImport(Darwin)
        guard var pointer = _NSGetEnviron()?.pointee else { return [] }
        #else
        var pointer = environ
        #endif
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }
}
