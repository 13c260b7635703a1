#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

// libc's functions whose names `LiveSystem`'s methods take, reached from
// file scope, where those methods do not hide them.
private func cUmask(_ mask: mode_t) -> mode_t { umask(mask) }
private func cKill(_ pid: Int32, _ signal: Int32) -> Int32 { kill(pid, signal) }
private func cOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func cClose(_ fd: Int32) -> Int32 { close(fd) }
private func cRead(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) -> Int {
    read(fd, buffer.baseAddress, buffer.count)
}
private func cWrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int { write(fd, bytes.baseAddress, bytes.count) }
private func cPoll(_ entries: inout [pollfd], _ timeout: Int32) -> Int32 {
    poll(&entries, nfds_t(entries.count), timeout)
}
private func cUnlink(_ path: String) -> Int32 { unlink(path) }
private func cRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }

/// The system calls themselves: libc and the shims of `CBellwether`.
struct LiveSystem: SystemCalls {
    private static func failure(_ call: String, _ code: Int32) -> SystemCallError {
        SystemCallError(call: call, errno: code)
    }

    // MARK: Clocks

    func monotonicNow() -> Instant {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Instant(nanoseconds: Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec))
    }

    func realtimeNow() -> (seconds: Int, nanoseconds: Int) {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return (Int(spec.tv_sec), Int(spec.tv_nsec))
    }

    // MARK: This process

    func processID() -> Int32 { getpid() }
    func ownProcessGroup() -> Int32 { getpgrp() }
    func effectiveUserID() -> UInt32 { UInt32(geteuid()) }
    func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count - 1)
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    func setSignalDisposition(_ signal: Int32, ignore: Bool) { _ = bw_signal_disposition(signal, ignore ? 1 : 0) }
    func closeOnExec(from lowest: Int32) { _ = bw_cloexec_from(lowest) }
    func becomeChildSubreaper() { _ = bw_set_child_subreaper() }
    func umask(_ mask: mode_t) -> mode_t { cUmask(mask) }
    func clockTicksPerSecond() -> Int { sysconf(Int32(_SC_CLK_TCK)) }
    func pageSize() -> Int { sysconf(Int32(_SC_PAGESIZE)) }

    // MARK: Other processes

    func kill(_ pid: Int32, _ signal: Int32) -> Int32 { cKill(pid, signal) == 0 ? 0 : errno }

    func killTree(guardPID: Int32) -> Int32 { bw_kill_tree(guardPID) }

    func processGroup(of pid: Int32) -> Int32 {
        let group = getpgid(pid)
        return group >= 0 ? group : -errno
    }

    func reapOne() -> (pid: Int32, status: Int32)? {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 { return (pid, status) }
            if pid == -1 && errno == EINTR { continue }
            return nil
        }
    }

    func children() -> [Int32]? {
        #if os(Linux)
        let own = getpid()
        guard let list = try? Sys.readFile("/proc/\(own)/task/\(own)/children") else { return nil }
        return list.split(separator: UInt8(ascii: " ")).compactMap { Int32(String(decoding: $0, as: UTF8.self)) }
        #else
        return nil
        #endif
    }

    func spawn(_ request: SpawnRequest) -> Result<Int32, SystemCallError> {
        var pid: pid_t = 0
        let error = withCStrings(request.arguments) { argv in
            withCStrings(request.environment) { envp in
                request.descriptors.withUnsafeBufferPointer { fds in
                    let out = request.stdout ?? -1, err = request.stderr ?? -1
                    if let directory = request.directory {
                        return bw_spawn(&pid, request.path, argv, envp, fds.baseAddress, Int32(fds.count), directory,
                                        out, err)
                    } else {
                        return bw_spawn(&pid, request.path, argv, envp, fds.baseAddress, Int32(fds.count), nil,
                                        out, err)
                    }
                }
            }
        }
        return error == 0 ? .success(pid) : .failure(Self.failure("posix_spawn \(request.path)", error))
    }

    func niceValue() -> Int32 { bw_nice() }
    func canLowerNice(to value: Int32) -> Bool { bw_can_lower_nice_to(value) == 1 }
    func setGroupNice(_ group: Int32, _ value: Int32) -> Int32 { bw_set_group_nice(group, value) }
    func addressRandomization() -> Bool { bw_address_randomization() == 1 }
    func setAddressRandomization(_ on: Bool) -> Int32 { bw_set_address_randomization(on ? 1 : 0) }

    // MARK: Descriptors

    func open(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 {
        let fd = cOpen(path, flags | O_CLOEXEC, mode)
        return fd >= 0 ? fd : -errno
    }

    func close(_ fd: Int32) { _ = cClose(fd) }

    /// A count, or -errno.
    private static func counted(_ count: Int) -> Int { count >= 0 ? count : -Int(errno) }

    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        Self.counted(cRead(fd, buffer))
    }

    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        Self.counted(cWrite(fd, bytes))
    }

    func sendNoSignal(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        #if os(Linux)
        Self.counted(send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)))
        #else
        Self.counted(send(fd, bytes.baseAddress, bytes.count, 0))
        #endif
    }

    func poll(_ fds: [(fd: Int32, events: Int16)], timeout: Int32) -> [Int16] {
        var entries = fds.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
        let count = cPoll(&entries, timeout)
        return count <= 0 ? entries.map { _ in 0 } : entries.map(\.revents)
    }

    func pipe(nonBlockingWrite: Bool) -> Result<(read: Int32, write: Int32), SystemCallError> {
        var ends: [Int32] = [-1, -1]
        let error = bw_pipe_cloexec(&ends, nonBlockingWrite ? 1 : 0)
        return error == 0 ? .success((ends[0], ends[1])) : .failure(Self.failure("pipe", -error))
    }

    func setNonBlocking(_ fd: Int32) { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }

    func seqpacketPair() -> Result<(Int32, Int32), SystemCallError> {
        var ends: [Int32] = [-1, -1]
        let error = bw_seqpacket_pair(&ends)
        return error == 0 ? .success((ends[0], ends[1])) : .failure(Self.failure("socketpair", -error))
    }

    func sendWithDescriptors(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ descriptors: [Int32]) -> Int {
        Int(bw_send_with_fds(fd, bytes.baseAddress, UInt(bytes.count), descriptors, Int32(descriptors.count)))
    }

    func lock(_ fd: Int32, wait: Bool) -> Int32 {
        flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) == 0 ? 0 : errno
    }

    func recordLock(_ fd: Int32) -> Int32 { bw_file_lock(fd) }
    func recordLockHolder(_ fd: Int32) -> Int32 { bw_file_lock_holder(fd) }
    func openInotify() -> Int32 { bw_inotify_open() }
    func addWatch(_ fd: Int32, _ path: String, directory: Bool) -> Int32 {
        bw_inotify_watch(fd, path, directory ? 1 : 0)
    }

    // MARK: Signals and sd_notify

    func openSignalSource(_ signals: [Int32]) -> Int32 {
        signals.withUnsafeBufferPointer { bw_signal_source_open($0.baseAddress, Int32($0.count)) }
    }

    func readSignal(_ fd: Int32) -> Int32 { bw_signal_source_read(fd) }

    func openNotifySocket() -> Result<(fd: Int32, name: String), SystemCallError> {
        var name = [CChar](repeating: 0, count: 108)
        let fd = bw_notify_open(&name, Int32(name.count))
        guard fd >= 0 else { return .failure(Self.failure("notify socket", -fd)) }
        return .success((fd, String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
    }

    func receiveNotify(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (length: Int, pid: Int32) {
        var pid: pid_t = 0
        let length = bw_notify_receive(fd, buffer.baseAddress!.assumingMemoryBound(to: CChar.self),
                                       Int32(buffer.count), &pid)
        return (Int(length), pid)
    }

    func sendNotify(to address: String, _ message: String) { _ = bw_notify_send(address, message) }

    // MARK: Sockets

    func listenUnix(_ path: String, mode: Int32, backlog: Int32) -> Int32 { bw_listen_unix(path, mode, backlog) }
    func listenInet(family: Int32, host: String, port: Int32, backlog: Int32) -> Int32 {
        bw_listen_inet(family, host, port, backlog)
    }
    func localPort(_ fd: Int32) -> Int32 { bw_local_port(fd) }
    func isListening(_ fd: Int32) -> Int32 { bw_is_listening(fd) }
    func accept(_ fd: Int32) -> Int32 { bw_accept(fd) }
    func peerUID(_ fd: Int32) -> Int64 { Int64(bw_peer_uid(fd)) }
    func connectTCP(host: String, port: Int32) -> Int32 { bw_tcp_connect(host, port) }
    func socketError(_ fd: Int32) -> Int32 { bw_socket_error(fd) }
    func connectUnix(_ path: String, timeout: Int32) -> Int32 { bw_unix_connect(path, timeout) }
    func unixListening(_ path: String) -> Int32 { bw_unix_listening(path) }

    // MARK: TLS

    func tlsUnavailable() -> String? {
        var message = [CChar](repeating: 0, count: 256)
        return bw_tls_available(&message, message.count) == 0 ? nil : Self.text(message)
    }

    func tlsOpen(fd: Int32, host: String, settings: TLSSettings) -> Result<TLSHandle, TLSError> {
        let verify = switch settings.verification {
        case .none: BW_TLS_VERIFY_NONE
        case .certificateAuthority: BW_TLS_VERIFY_CA
        case .full: BW_TLS_VERIFY_FULL
        }
        var session: OpaquePointer?
        var message = [CChar](repeating: 0, count: 512)
        let result = if let caFile = settings.caFile {
            bw_tls_new(fd, host, Int32(verify), caFile, &session, &message, message.count)
        } else {
            bw_tls_new(fd, host, Int32(verify), nil, &session, &message, message.count)
        }
        guard result == 0, let session else { return .failure(TLSError(message: Self.text(message))) }
        return .success(TLSHandle(rawValue: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(session)))))
    }

    private static func session(_ handle: TLSHandle) -> OpaquePointer {
        OpaquePointer(bitPattern: handle.rawValue)!
    }

    /// A BW_TLS_* code as a step; `count` for BW_TLS_DONE.
    private static func step(_ code: Int32, _ count: Int, _ handle: TLSHandle) -> TLSStep {
        switch code {
        case Int32(BW_TLS_DONE): .done(count)
        case Int32(BW_TLS_WANT_READ): .wantRead
        case Int32(BW_TLS_WANT_WRITE): .wantWrite
        case Int32(BW_TLS_CLOSED): .closed
        case Int32(BW_TLS_UNTRUSTED): .untrusted(String(cString: bw_tls_error(session(handle))))
        default: .failed(String(cString: bw_tls_error(session(handle))))
        }
    }

    func tlsHandshake(_ session: TLSHandle) -> TLSStep {
        Self.step(bw_tls_handshake(Self.session(session)), 0, session)
    }

    func tlsRead(_ session: TLSHandle, into buffer: UnsafeMutableRawBufferPointer) -> TLSStep {
        var count = 0
        let code = bw_tls_read(Self.session(session), buffer.baseAddress, buffer.count, &count)
        return Self.step(code, count, session)
    }

    func tlsWrite(_ session: TLSHandle, _ bytes: UnsafeRawBufferPointer) -> TLSStep {
        var count = 0
        let code = bw_tls_write(Self.session(session), bytes.baseAddress, bytes.count, &count)
        return Self.step(code, count, session)
    }

    func tlsClose(_ session: TLSHandle) { bw_tls_free(Self.session(session)) }

    private static func text(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: Files

    func makeDirectory(_ path: String, _ mode: mode_t) -> Int32 { mkdir(path, mode) == 0 ? 0 : errno }

    func unlink(_ path: String) { _ = cUnlink(path) }

    func rename(_ from: String, to: String) -> Int32 { cRename(from, to) == 0 ? 0 : errno }

    func status(_ path: String, followLinks: Bool) -> Result<FileStatus, SystemCallError> {
        var info = stat()
        let result = followLinks ? stat(path, &info) : lstat(path, &info)
        return result == 0 ? .success(Self.status(info)) : .failure(Self.failure("stat \(path)", errno))
    }

    func status(of fd: Int32) -> Result<FileStatus, SystemCallError> {
        var info = stat()
        return fstat(fd, &info) == 0 ? .success(Self.status(info)) : .failure(Self.failure("fstat", errno))
    }

    private static func status(_ info: stat) -> FileStatus {
        let kind: FileStatus.Kind = switch info.st_mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symbolicLink
        case S_IFSOCK: .socket
        default: .other
        }
        return FileStatus(kind: kind, owner: UInt32(info.st_uid), mode: UInt32(info.st_mode & 0o7777),
                          device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    func isAccessible(_ path: String, _ mode: Int32) -> Bool { access(path, mode) == 0 }

    func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func entries(_ directory: String) -> [String] {
        guard let listing = opendir(directory) else { return [] }
        defer { closedir(listing) }
        var names: [String] = []
        while let entry = readdir(listing) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// Calls `body` with a NULL-terminated array of C strings.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
