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

/// The shell's one door to the system: `calls` makes the system calls (the
/// live ones, or a test's recording fake); the helpers here retry EINTR,
/// throw `SystemCallError` and compose, once for every caller.
enum Sys {
    /// The system calls of the running task: `LiveSystem`, or what a test
    /// binds with `Sys.$calls.withValue(fake) { … }`.
    @TaskLocal static var calls: any SystemCalls = LiveSystem()

    /// Runs `body` until it succeeds or fails with something other than
    /// EINTR; `body` returns a negative errno on failure.
    @discardableResult
    static func retrying(_ call: String, _ body: () -> Int32) throws(SystemCallError) -> Int32 {
        while true {
            let result = body()
            if result >= 0 { return result }
            if result != -EINTR { throw SystemCallError(call: call, errno: -result) }
        }
    }

    static func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemCallError) -> Int32 {
        try retrying("open \(path)") { calls.open(path, flags, mode) }
    }

    static func closeFile(_ fd: Int32) { calls.close(fd) }

    /// Creates the runtime `directory` 0700 if missing; it must then be this
    /// user's and writable by nobody else, or another user could replace the
    /// control socket or the scheduler token in it.
    static func preparePrivateDirectory(_ directory: String) throws(BellwetherError) {
        let made = calls.makeDirectory(directory, 0o700)
        if made != 0 && made != EEXIST {
            throw .cannotCreate(what: "runtime directory", path: directory, errno: made)
        }
        guard case .success(let info) = calls.status(directory, followLinks: false), info.kind == .directory,
              info.owner == calls.effectiveUserID(), info.mode & 0o022 == 0 else {
            throw .unsafeDirectory(path: directory)
        }
    }

    /// Sends a signal to one process; one that is already gone is not an error.
    static func send(_ signal: Signal, to pid: Int32) {
        precondition(pid > 0, "a process id, not a group: \(pid)")
        _ = calls.kill(pid, signal.rawValue)
    }

    /// Sends a signal to every process of a group; a group that is already gone is not an error.
    static func send(_ signal: Signal, toGroup group: Int32) {
        precondition(group > 0, "a process group id: \(group)")
        _ = calls.kill(-group, signal.rawValue)
    }

    /// flock(LOCK_EX|LOCK_NB): true when taken, false when someone else holds it.
    static func tryLock(_ fd: Int32) throws(SystemCallError) -> Bool {
        while true {
            switch calls.lock(fd, wait: false) {
            case 0: return true
            case EINTR: continue
            case EWOULDBLOCK: return false
            case let code: throw SystemCallError(call: "flock", errno: code)
            }
        }
    }

    /// One non-blocking waitpid(-1): nil when no child has changed state.
    static func reapOne() -> (pid: Int32, status: ExitStatus)? {
        calls.reapOne().map { ($0.pid, decode($0.status)) }
    }

    /// This process's children, zombies included: from the kernel's list
    /// (/proc/PID/task/PID/children) or, where it has none, a scan of /proc.
    static func children() -> [Int32] {
        if let listed = calls.children() { return listed }
        #if os(Linux)
        let own = calls.processID()
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

    /// Whether /proc shows this process's own PID namespace.
    static func procIsOurs() -> Bool { calls.linkTarget("/proc/self") == String(calls.processID()) }

    /// The entries of a directory (names, "." and ".." left out).
    static func entries(_ directory: String) -> [String] { calls.entries(directory) }

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
        var milliseconds: Int32 = -1
        if let timeout {
            // Round up, so that the loop never wakes just before a deadline.
            let ms = (max(timeout.nanoseconds, 0) + 999_999) / 1_000_000
            milliseconds = Int32(clamping: ms)
        }
        return calls.poll(fds, timeout: milliseconds)
    }

    static func monotonicNow() -> Instant { calls.monotonicNow() }

    /// send(2) on a socket whose peer may have gone: an error, never SIGPIPE.
    /// Returns the count sent, or -errno.
    static func sendWithoutSignal(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        calls.sendNoSignal(fd, bytes)
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemCallError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { calls.write(fd, UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            if written < 0 {
                if written == -Int(EINTR) { continue }
                throw SystemCallError(call: "write", errno: Int32(-written))
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
            let count = chunk.withUnsafeMutableBytes { calls.read(fd, into: $0) }
            if count < 0 {
                if count == -Int(EINTR) { continue }
                throw SystemCallError(call: "read \(path)", errno: Int32(-count))
            }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }

    static func isDirectory(_ path: String) -> Int32? {
        switch calls.status(path, followLinks: true) {
        case .success(let info): return info.kind == .directory ? nil : ENOTDIR
        case .failure(let error): return error.errno
        }
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
