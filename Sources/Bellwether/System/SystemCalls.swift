#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every system call the master's shell makes, as one protocol: `LiveSystem`
/// makes them; a test puts a recording fake in its place (`Sys.$calls`), so
/// that the shell can be driven through a spawn that fails with EAGAIN, an
/// accept that fails with EMFILE or a signal between two polls, in simulated
/// time and without processes.
///
/// The calls are thin: they do what one system call (or one C shim of
/// `CBellwether`) does and report a failure as a negative errno or nil,
/// never through the global `errno`. Retrying EINTR, turning failures into
/// `SystemCallError` and composite operations live in `Sys`, once.
protocol SystemCalls: Sendable {
    // MARK: Clocks
    func monotonicNow() -> Instant
    /// CLOCK_REALTIME: seconds and nanoseconds since the epoch, for log timestamps.
    func realtimeNow() -> (seconds: Int, nanoseconds: Int)

    // MARK: This process
    func processID() -> Int32
    func ownProcessGroup() -> Int32
    func effectiveUserID() -> UInt32
    func hostName() -> String
    /// SIGCHLD to its default (`ignore` false) or SIG_IGN.
    func setSignalDisposition(_ signal: Int32, ignore: Bool)
    /// Every descriptor from `lowest` up close-on-exec.
    func closeOnExec(from lowest: Int32)
    func becomeChildSubreaper()
    func umask(_ mask: mode_t) -> mode_t
    /// sysconf(_SC_CLK_TCK) and sysconf(_SC_PAGESIZE): the units of /proc/self/stat and statm.
    func clockTicksPerSecond() -> Int
    func pageSize() -> Int

    // MARK: Other processes
    /// 0 or errno.
    func kill(_ pid: Int32, _ signal: Int32) -> Int32
    /// The guard's whole tree gets SIGKILL (`bw_kill_tree`): 0 or errno.
    func killTree(guardPID: Int32) -> Int32
    /// The process group `pid` leads or belongs to; -errno when it is gone.
    func processGroup(of pid: Int32) -> Int32
    /// One `waitpid(-1, WNOHANG)`: a child that changed state and its raw status.
    func reapOne() -> (pid: Int32, status: Int32)?
    /// This process's children, zombies included; nil where the kernel does not list them.
    func children() -> [Int32]?
    /// `bw_spawn`: the pid, or errno.
    func spawn(_ request: SpawnRequest) -> Result<Int32, SystemCallError>
    func niceValue() -> Int32
    func canLowerNice(to value: Int32) -> Bool
    /// 0 or errno.
    func setGroupNice(_ group: Int32, _ value: Int32) -> Int32
    func addressRandomization() -> Bool
    /// 0 or errno.
    func setAddressRandomization(_ on: Bool) -> Int32

    // MARK: Descriptors
    /// A descriptor, always close-on-exec, or -errno.
    func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32
    func close(_ fd: Int32)
    /// The count read, or -errno.
    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// The count written, or -errno.
    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int
    /// send(2) without SIGPIPE: the count sent, or -errno.
    func sendNoSignal(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int
    /// Each descriptor's revents; all zero on a timeout. `timeout` in milliseconds, -1: none.
    func poll(_ fds: [(fd: Int32, events: Int16)], timeout: Int32) -> [Int16]
    /// A close-on-exec pipe, or -errno.
    func pipe(nonBlockingWrite: Bool) -> Result<(read: Int32, write: Int32), SystemCallError>
    func setNonBlocking(_ fd: Int32)
    /// A connected pair of close-on-exec SOCK_SEQPACKET Unix sockets (a fork server's orders).
    func seqpacketPair() -> Result<(Int32, Int32), SystemCallError>
    /// One datagram with `descriptors` attached (SCM_RIGHTS), without SIGPIPE: the count sent, or -errno.
    func sendWithDescriptors(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ descriptors: [Int32]) -> Int
    /// flock: 0, or errno (EWOULDBLOCK: someone else holds it).
    func lock(_ fd: Int32, wait: Bool) -> Int32
    /// A POSIX write lock on the whole file, not waiting: 0, the holder's pid, or -errno.
    func recordLock(_ fd: Int32) -> Int32
    /// The pid of another process holding a POSIX lock on the file, 0 if none, or -errno.
    func recordLockHolder(_ fd: Int32) -> Int32
    /// A non-blocking, close-on-exec inotify descriptor, or -errno (-ENOSYS off Linux).
    func openInotify() -> Int32
    /// Watches a directory's entries, or a file itself: the watch descriptor, or -errno.
    func addWatch(_ fd: Int32, _ path: String, directory: Bool) -> Int32

    // MARK: Signals and sd_notify
    /// A descriptor the `signals` (now blocked) are read from, or -errno.
    func openSignalSource(_ signals: [Int32]) -> Int32
    /// The next pending signal, 0 when none, -errno.
    func readSignal(_ fd: Int32) -> Int32
    /// The workers' notify socket and its abstract name, or errno.
    func openNotifySocket() -> Result<(fd: Int32, name: String), SystemCallError>
    /// One datagram and its sender: length (0: none pending, -errno) and pid.
    func receiveNotify(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (length: Int, pid: Int32)
    func sendNotify(to address: String, _ message: String)

    // MARK: Sockets
    /// A listening descriptor, or -errno.
    func listenUnix(_ path: String, mode: Int32, backlog: Int32) -> Int32
    func listenInet(family: Int32, host: String, port: Int32, backlog: Int32) -> Int32
    func localPort(_ fd: Int32) -> Int32
    /// 1 if a listening stream socket, 0 if not, -errno if not a socket.
    func isListening(_ fd: Int32) -> Int32
    /// A connection, non-blocking and close-on-exec, or -errno.
    func accept(_ fd: Int32) -> Int32
    func peerUID(_ fd: Int32) -> Int64
    /// A non-blocking TCP connection, connected or under way, or -errno.
    func connectTCP(host: String, port: Int32) -> Int32
    /// SO_ERROR: 0 once connected.
    func socketError(_ fd: Int32) -> Int32
    /// A blocking connection to a Unix socket, waiting at most `timeout` seconds, or -errno.
    func connectUnix(_ path: String, timeout: Int32) -> Int32
    /// 1 when something listens at `path`, 0 when not, -errno when it cannot tell.
    func unixListening(_ path: String) -> Int32

    // MARK: TLS (CBellwetherTLS.h: the system's OpenSSL, loaded at run time)
    /// nil when libssl can be loaded; else why not.
    func tlsUnavailable() -> String?
    /// A client session over connected, non-blocking `fd`, or why there is none.
    func tlsOpen(fd: Int32, host: String, settings: TLSSettings) -> Result<TLSHandle, TLSError>
    /// The handshake's next step: `.done(0)` once established.
    func tlsHandshake(_ session: TLSHandle) -> TLSStep
    func tlsRead(_ session: TLSHandle, into buffer: UnsafeMutableRawBufferPointer) -> TLSStep
    func tlsWrite(_ session: TLSHandle, _ bytes: UnsafeRawBufferPointer) -> TLSStep
    /// close_notify if established and sound, then the session is gone; the descriptor stays open.
    func tlsClose(_ session: TLSHandle)

    // MARK: Files
    /// 0 or errno.
    func makeDirectory(_ path: String, _ mode: mode_t) -> Int32
    func unlink(_ path: String)
    /// 0 or errno.
    func rename(_ from: String, to: String) -> Int32
    /// stat (`followLinks`) or lstat of a path, or errno.
    func status(_ path: String, followLinks: Bool) -> Result<FileStatus, SystemCallError>
    func status(of fd: Int32) -> Result<FileStatus, SystemCallError>
    func isAccessible(_ path: String, _ mode: Int32) -> Bool
    func resolvedPath(_ path: String) -> String?
    func linkTarget(_ path: String) -> String?
    /// A directory's entries, "." and ".." left out; empty when it cannot be read.
    func entries(_ directory: String) -> [String]
}

/// What `SystemCalls.spawn` starts: see `bw_spawn`.
struct SpawnRequest: Hashable, Sendable {
    var path: String
    /// argv, its first element included.
    var arguments: [String]
    var environment: [String]
    /// Placed at descriptors 3, 4, … of the child.
    var descriptors: [Int32]
    var directory: String?
    /// The child's stdout and stderr (`--worker-output prefix|json`); nil: the master's own.
    var stdout: Int32? = nil
    var stderr: Int32? = nil
}

/// A TLS session of `SystemCalls.tlsOpen`: the live one's pointer, or a fake's number.
struct TLSHandle: Hashable, Sendable {
    var rawValue: UInt
}

/// Why a TLS session could not be made: one line.
struct TLSError: Error, Hashable, Sendable {
    var message: String
}

/// What one step of a TLS session came to (the BW_TLS_* codes).
enum TLSStep: Hashable, Sendable {
    /// The handshake is complete (0), or this many bytes were read or written.
    case done(Int)
    /// Poll for POLLIN, then take the step again.
    case wantRead
    /// Poll for POLLOUT, then take the step again.
    case wantWrite
    /// The server ended the session.
    case closed
    case failed(String)
    /// The server's certificate failed verification.
    case untrusted(String)
}

/// The part of a `stat` the shell reads.
struct FileStatus: Hashable, Sendable {
    enum Kind: Hashable, Sendable { case file, directory, symbolicLink, socket, other }
    var kind: Kind
    var owner: UInt32
    /// Permission bits.
    var mode: UInt32
    var device: UInt64
    var inode: UInt64
}
