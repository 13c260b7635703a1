#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import Bellwether

/// A recording fake of the system calls (`SystemCalls`), for tests of the
/// shell (`Master`) without processes, in simulated time.
///
/// Time moves only when the master sleeps in `poll`: to its timeout or to
/// the next scripted happening, whichever is first. Children are entries in
/// a table: a spawn makes one (or fails as scripted), TERM makes it exit a
/// little later, the guard's kill order at once; an exit queues SIGCHLD on
/// the signal descriptor and the status for `waitpid`. A master that would
/// sleep forever, or polls `pollLimit` times without time passing, is ended
/// with SIGKILL-like force (every child gone, TERM queued) and the test
/// hears of it through `blockedForever` / `spinning`.
final class FakeSystem: SystemCalls, @unchecked Sendable {
    struct Child {
        var request: SpawnRequest
        var spawnedAt: Instant
    }

    // MARK: What happened

    private(set) var now = Instant(nanoseconds: 1_000_000_000_000)
    /// Every spawn asked for, in order, with its answer (a pid, or the errno).
    private(set) var spawns: [(at: Instant, request: SpawnRequest, result: Result<Int32, SystemCallError>)] = []
    /// Every signal sent: (pid, signal number, when).
    private(set) var kills: [(pid: Int32, signal: Int32, at: Instant)] = []
    private(set) var accepts: [(at: Instant, result: Int32)] = []
    /// The master's stderr, a line each.
    private(set) var log: [String] = []
    private(set) var polls = 0
    /// When the master woke because its poll timed out, with nothing else to do.
    private(set) var timeouts: [Instant] = []
    /// The master slept with no deadline and nothing left to happen.
    private(set) var blockedForever = false
    /// The master polled `pollLimit` times in a row without time passing.
    private(set) var spinning = false

    // MARK: The world

    private(set) var living: [Int32: Child] = [:]
    private var zombies: [(pid: Int32, status: Int32)] = []
    private var signals: [Int32] = []
    private var notifications: [(pid: Int32, text: String)] = []
    private var happenings: [(at: Instant, what: (FakeSystem) -> Void)] = []
    private var nextFD: Int32 = 10
    private var nextPID: Int32 = 1000
    private var signalFD: Int32 = -1
    private var notifyFD: Int32 = -1
    private var controlFD: Int32 = -1
    private var inotifyFD: Int32 = -1
    /// Bytes the inotify descriptor has to read, as the kernel writes them.
    private var inotifyBytes: [UInt8] = []
    private var logBuffer: [UInt8] = []
    private var pollsWithoutTime = 0

    // MARK: The script

    /// The errno of each spawn to come, in order; nil: it succeeds.
    var spawnFailures: [Int32?] = []
    /// What accept answers while a connection waits (negative errno), in order; then the connection.
    var acceptFailures: [Int32] = []
    /// Connections waiting on the control socket.
    var pendingConnections = 0
    /// What a new child does once spawned (e.g. send READY=1 later).
    var onSpawn: (FakeSystem, Int32, SpawnRequest) -> Void = { _, _, _ in }
    /// How long a child takes to exit after TERM.
    var exitDelay = Duration.milliseconds(5)
    var pollLimit = 10_000
    /// The directories a listing shows (`entries`); names ending in ".py" are files, the rest directories.
    var directories: [String: [String]] = [:]
    /// Files `open` finds (e.g. /proc's), by path, with what `read` gives.
    var files: [String: [UInt8]] = [:]
    /// The open descriptors of `files`, with what is left to read.
    private var openFiles: [Int32: [UInt8]] = [:]
    /// How many inotify watches there are before ENOSPC (fs.inotify.max_user_watches).
    var watchLimit = Int.max
    /// Every path watched, in order; a watch descriptor is its index + 1.
    private(set) var watches: [String] = []
    /// What `tlsUnavailable` answers: nil, libssl loads.
    var tlsMissing: String?
    /// What each handshake step answers, in order; then `.done(0)`.
    var handshakeSteps: [TLSStep] = []
    /// Every TLS session opened (its fd, host and settings), and those closed.
    private(set) var tlsOpened: [(fd: Int32, host: String, settings: TLSSettings)] = []
    private(set) var tlsClosed: [TLSHandle] = []

    /// `what` happens `delay` from now.
    func after(_ delay: Duration, _ what: @escaping (FakeSystem) -> Void) {
        happenings.append((now + delay, what))
        happenings.sort { $0.at < $1.at }
    }

    func deliver(_ signal: Signal) { signals.append(signal.rawValue) }

    /// An inotify event on the watch of `path`, for the entry `name`.
    func change(in path: String, _ name: String?, mask: UInt32 = 0x8) {
        guard let index = watches.firstIndex(of: path) else { return }
        var padded = Array((name ?? "").utf8)
        if name != nil { padded += [UInt8](repeating: 0, count: 16 - padded.count % 16) }
        for word in [UInt32(index + 1), mask, 0, UInt32(padded.count)] { withUnsafeBytes(of: word) { inotifyBytes += $0 } }
        inotifyBytes += padded
    }

    func notify(from pid: Int32, _ text: String) { notifications.append((pid, text)) }

    /// `pid` becomes the master's child without a spawn: an orphan
    /// reparented to it (a subreaper, or PID 1).
    func adopt(_ pid: Int32) {
        living[pid] = Child(request: SpawnRequest(path: "", arguments: [], environment: [], descriptors: []),
                            spawnedAt: now)
    }

    /// The child exits with `status` (a raw wait status).
    func exit(_ pid: Int32, status: Int32) {
        guard living.removeValue(forKey: pid) != nil else { return }
        zombies.append((pid, status))
        signals.append(SIGCHLD)
    }

    static func exited(_ code: Int32) -> Int32 { code << 8 }
    static func signaled(_ signal: Int32) -> Int32 { signal }

    /// The log lines that contain `text`.
    func lines(_ text: String) -> [String] { log.filter { $0.contains(text) } }

    // MARK: Clocks

    func monotonicNow() -> Instant { now }
    func realtimeNow() -> (seconds: Int, nanoseconds: Int) { (Int(now.nanoseconds / 1_000_000_000), 0) }

    // MARK: This process

    func processID() -> Int32 { 4242 }
    func ownProcessGroup() -> Int32 { 4242 }
    func effectiveUserID() -> UInt32 { 1000 }
    func hostName() -> String { "fake" }
    func setSignalDisposition(_ signal: Int32, ignore: Bool) {}
    func closeOnExec(from lowest: Int32) {}
    func becomeChildSubreaper() {}
    func umask(_ mask: mode_t) -> mode_t { 0o022 }
    func clockTicksPerSecond() -> Int { 100 }
    func pageSize() -> Int { 4096 }

    // MARK: Other processes

    func kill(_ pid: Int32, _ signal: Int32) -> Int32 {
        kills.append((pid, signal, now))
        guard living[pid] != nil else { return ESRCH }
        if signal == SIGTERM || signal == SIGINT || signal == SIGQUIT {
            after(exitDelay) { $0.exit(pid, status: Self.signaled(signal)) }
        } else if signal == SIGKILL {
            exit(pid, status: Self.signaled(SIGKILL))
        }
        return 0
    }

    func killTree(guardPID: Int32) -> Int32 {
        kills.append((guardPID, SIGKILL, now))
        exit(guardPID, status: Self.signaled(SIGKILL))
        return 0
    }

    func processGroup(of pid: Int32) -> Int32 { living[pid] != nil ? pid : -ESRCH }

    func reapOne() -> (pid: Int32, status: Int32)? { zombies.isEmpty ? nil : zombies.removeFirst() }

    func children() -> [Int32]? { Array(living.keys) + zombies.map(\.pid) }

    func spawn(_ request: SpawnRequest) -> Result<Int32, SystemCallError> {
        let failure = spawnFailures.isEmpty ? nil : spawnFailures.removeFirst()
        let result: Result<Int32, SystemCallError>
        if let failure {
            result = .failure(SystemCallError(call: "posix_spawn \(request.path)", errno: failure))
        } else {
            nextPID += 1
            living[nextPID] = Child(request: request, spawnedAt: now)
            result = .success(nextPID)
        }
        spawns.append((now, request, result))
        if case .success(let pid) = result { onSpawn(self, pid, request) }
        return result
    }

    func niceValue() -> Int32 { 0 }
    func canLowerNice(to value: Int32) -> Bool { true }
    func setGroupNice(_ group: Int32, _ value: Int32) -> Int32 { 0 }
    func addressRandomization() -> Bool { true }
    func setAddressRandomization(_ on: Bool) -> Int32 { 0 }

    // MARK: Descriptors

    private func descriptor() -> Int32 {
        nextFD += 1
        return nextFD
    }

    func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        if path.hasPrefix("/proc/") {
            guard let content = files[path] else { return -ENOENT }
            let fd = descriptor()
            openFiles[fd] = content
            return fd
        }
        return descriptor()
    }
    func close(_ fd: Int32) { openFiles[fd] = nil }
    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if let content = openFiles[fd] {
            let count = min(buffer.count, content.count)
            content.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            openFiles[fd] = Array(content.dropFirst(count))
            return count
        }
        guard fd == inotifyFD else { return 0 }
        guard !inotifyBytes.isEmpty else { return -Int(EAGAIN) }
        let count = min(buffer.count, inotifyBytes.count)
        inotifyBytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        inotifyBytes.removeFirst(count)
        return count
    }

    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        if fd == 2 {
            logBuffer += bytes
            while let newline = logBuffer.firstIndex(of: UInt8(ascii: "\n")) {
                log.append(String(decoding: logBuffer[..<newline], as: UTF8.self))
                logBuffer.removeSubrange(...newline)
            }
        }
        return bytes.count
    }

    func sendNoSignal(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int { bytes.count }

    func poll(_ fds: [(fd: Int32, events: Int16)], timeout: Int32) -> [Int16] {
        polls += 1
        var revents = readiness(fds)
        if revents.contains(where: { $0 != 0 }) {
            pollsWithoutTime += 1
            if pollsWithoutTime >= pollLimit { endRun(spinning: true) }
            return revents
        }
        pollsWithoutTime = 0
        let wake = timeout < 0 ? nil : now + .milliseconds(Int64(timeout))
        guard let next = [wake, happenings.first?.at].compactMap({ $0 }).min() else {
            endRun(spinning: false)
            return readiness(fds)
        }
        now = max(now, next)
        if let wake, wake <= (happenings.first?.at ?? wake) { timeouts.append(now) }
        while let first = happenings.first, first.at <= now {
            happenings.removeFirst()
            first.what(self)
        }
        revents = readiness(fds)
        return revents
    }

    private func readiness(_ fds: [(fd: Int32, events: Int16)]) -> [Int16] {
        fds.map { entry in
            let readable = switch entry.fd {
            case signalFD: !signals.isEmpty
            case notifyFD: !notifications.isEmpty
            case controlFD: pendingConnections > 0
            case inotifyFD: !inotifyBytes.isEmpty
            default: false
            }
            return readable && entry.events & Int16(POLLIN) != 0 ? Int16(POLLIN) : 0
        }
    }

    /// Ends a master that cannot end by itself: every child gone, TERM queued.
    private func endRun(spinning: Bool) {
        if spinning { self.spinning = true } else { blockedForever = true }
        pendingConnections = 0
        for pid in living.keys { exit(pid, status: Self.signaled(SIGKILL)) }
        signals.append(SIGTERM)
    }

    func pipe(nonBlockingWrite: Bool) -> Result<(read: Int32, write: Int32), SystemCallError> {
        .success((descriptor(), descriptor()))
    }

    func setNonBlocking(_ fd: Int32) {}

    func seqpacketPair() -> Result<(Int32, Int32), SystemCallError> { .success((descriptor(), descriptor())) }

    func sendWithDescriptors(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ descriptors: [Int32]) -> Int {
        bytes.count
    }
    func lock(_ fd: Int32, wait: Bool) -> Int32 { 0 }
    func recordLock(_ fd: Int32) -> Int32 { 0 }
    func recordLockHolder(_ fd: Int32) -> Int32 { 0 }
    func openInotify() -> Int32 {
        inotifyFD = descriptor()
        return inotifyFD
    }

    func addWatch(_ fd: Int32, _ path: String, directory: Bool) -> Int32 {
        guard watches.count < watchLimit else { return -ENOSPC }
        watches.append(path)
        return Int32(watches.count)
    }

    // MARK: Signals and sd_notify

    func openSignalSource(_ signals: [Int32]) -> Int32 {
        signalFD = descriptor()
        return signalFD
    }

    func readSignal(_ fd: Int32) -> Int32 { signals.isEmpty ? 0 : signals.removeFirst() }

    func openNotifySocket() -> Result<(fd: Int32, name: String), SystemCallError> {
        notifyFD = descriptor()
        return .success((notifyFD, "fake-notify"))
    }

    func receiveNotify(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (length: Int, pid: Int32) {
        guard !notifications.isEmpty else { return (0, 0) }
        let (pid, text) = notifications.removeFirst()
        let bytes = Array(text.utf8.prefix(buffer.count - 1))
        buffer.copyBytes(from: bytes)
        return (bytes.count, pid)
    }

    func sendNotify(to address: String, _ message: String) {}

    // MARK: Sockets

    func listenUnix(_ path: String, mode: Int32, backlog: Int32) -> Int32 {
        controlFD = descriptor()
        return controlFD
    }

    func listenInet(family: Int32, host: String, port: Int32, backlog: Int32) -> Int32 { descriptor() }
    func localPort(_ fd: Int32) -> Int32 { 8000 }
    func isListening(_ fd: Int32) -> Int32 { 1 }

    func accept(_ fd: Int32) -> Int32 {
        let result: Int32
        if pendingConnections == 0 {
            result = -EAGAIN
        } else if !acceptFailures.isEmpty {
            result = acceptFailures.removeFirst()
        } else {
            pendingConnections -= 1
            result = descriptor()
        }
        accepts.append((now, result))
        return result
    }

    func peerUID(_ fd: Int32) -> Int64 { 1000 }
    func connectTCP(host: String, port: Int32) -> Int32 { -ECONNREFUSED }
    func socketError(_ fd: Int32) -> Int32 { 0 }
    func connectUnix(_ path: String, timeout: Int32) -> Int32 { -ENOENT }
    func unixListening(_ path: String) -> Int32 { 0 }

    // MARK: TLS

    func tlsUnavailable() -> String? { tlsMissing }

    func tlsOpen(fd: Int32, host: String, settings: TLSSettings) -> Result<TLSHandle, TLSError> {
        if let tlsMissing { return .failure(TLSError(message: tlsMissing)) }
        tlsOpened.append((fd, host, settings))
        return .success(TLSHandle(rawValue: UInt(tlsOpened.count)))
    }

    func tlsHandshake(_ session: TLSHandle) -> TLSStep {
        handshakeSteps.isEmpty ? .done(0) : handshakeSteps.removeFirst()
    }

    /// No server speaks through the fake: nothing to read, every byte written.
    func tlsRead(_ session: TLSHandle, into buffer: UnsafeMutableRawBufferPointer) -> TLSStep { .wantRead }
    func tlsWrite(_ session: TLSHandle, _ bytes: UnsafeRawBufferPointer) -> TLSStep { .done(bytes.count) }
    func tlsClose(_ session: TLSHandle) { tlsClosed.append(session) }

    // MARK: Files

    func makeDirectory(_ path: String, _ mode: mode_t) -> Int32 { EEXIST }
    func unlink(_ path: String) {}
    func rename(_ from: String, to: String) -> Int32 { 0 }

    private static let aFile = FileStatus(kind: .file, owner: 1000, mode: 0o600, device: 1, inode: 1)

    func status(_ path: String, followLinks: Bool) -> Result<FileStatus, SystemCallError> {
        var status = Self.aFile
        if !path.hasSuffix(".ctl") && !path.hasSuffix("token") && !path.hasSuffix(".lock") && !path.hasSuffix(".py") {
            status.kind = .directory
            status.mode = 0o700
        }
        return .success(status)
    }

    func status(of fd: Int32) -> Result<FileStatus, SystemCallError> { .success(Self.aFile) }
    func isAccessible(_ path: String, _ mode: Int32) -> Bool { true }
    func resolvedPath(_ path: String) -> String? { path }
    func linkTarget(_ path: String) -> String? {
        ["/proc/self/exe": "/fake/bin/bellwether", "/proc/self": "4242"][path]
    }
    func entries(_ directory: String) -> [String] { directories[directory] ?? [] }
}
