#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// Spawns workers through the exec shim: posix_spawn (never fork) of
/// `bellwether-exec MASTER_PID CREDENTIALS APP ARGV...` in a new process group, with an
/// empty signal mask, default dispositions and stdin on /dev/null; the
/// listening sockets at fds 3, 4, … and, for the scheduler, the token after them.
struct Spawner {
    let shim: String
    let masterPID: Int32
    /// Our own executable, which runs as the lease guard.
    let executable: String

    init(masterPID: Int32) {
        let own = Self.ownExecutable()
        let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
        executable = own
        shim = directory + "/bellwether-exec"
        self.masterPID = masterPID
    }

    static func ownExecutable() -> String {
        #if os(Linux)
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 { return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        #endif
        return CommandLine.arguments.first ?? "bellwether"
    }

    /// `sockets` go to descriptors 3, 4, … (LISTEN_FDS), the token after them.
    /// LISTEN_PID and WATCHDOG_PID are placeholders that the shim sets to the
    /// worker's own pid.
    /// With `guardPipe`, the worker is the lease guard (our own executable as
    /// `bellwether-guard`), which runs the app through the shim in turn and
    /// reads renew deadlines from the pipe, placed after the token.
    func spawn(_ order: SpawnOrder, launch: Launch, sockets: [(fd: Int32, name: String)], token: Int32?,
               guardPipe: (fd: Int32, grace: Duration)? = nil,
               extraEnvironment: [String]) -> Result<Int32, SystemCallError> {
        var inherit: [Int32] = sockets.map(\.fd) + (token.map { [$0] } ?? [])
        var arguments = [shim, String(masterPID), launch.credentials.shimArgument]
        if let guardPipe {
            // The guard runs with the workers' credentials already; its shim changes nothing.
            arguments += [executable, "bellwether-guard", String(3 + inherit.count),
                          String(guardPipe.grace.nanoseconds / 1_000_000), shim, "-"]
            inherit.append(guardPipe.fd)
        }
        arguments += [launch.executable] + launch.arguments
        var environment = launch.environment + extraEnvironment + [
            "WORKERS_COUNT=\(order.workersCount)", "WORKER_ID=\(order.slot)",
            "WORKER_GENERATION=\(order.generation)", "\(launch.roleVariable)=\(order.role.rawValue)",
        ]
        if !sockets.isEmpty {
            environment += ["LISTEN_FDS=\(sockets.count)", "LISTEN_FDNAMES=" + sockets.map(\.name).joined(separator: ":"),
                            "LISTEN_PID=0"]
        }
        var pid: pid_t = 0
        let error = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                inherit.withUnsafeBufferPointer { fds in
                    if let directory = launch.directory {
                        bw_spawn(&pid, shim, argv, envp, fds.baseAddress, Int32(fds.count), directory)
                    } else {
                        bw_spawn(&pid, shim, argv, envp, fds.baseAddress, Int32(fds.count), nil)
                    }
                }
            }
        }
        return error == 0 ? .success(pid) : .failure(SystemCallError(call: "posix_spawn \(shim)", errno: error))
    }
}

/// Calls `body` with a NULL-terminated array of C strings.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
