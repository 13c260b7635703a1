#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// Spawns workers: posix_spawn (never fork) of `bellwether-exec MASTER_PID
/// CREDENTIALS GUARD APP ARGV...` in a new process group, with an empty
/// signal mask, default dispositions and stdin on /dev/null; the listening
/// sockets at fds 3, 4, …, then, for the scheduler, the token, then the
/// master link. `bellwether-exec` stays on as the worker's guard: it forks the
/// app, keeps the token and the link to itself, and exits only once the
/// app's whole process tree is gone (Sources/bellwether-exec/main.c).
struct Spawner {
    let shim: String
    let masterPID: Int32

    init(masterPID: Int32) {
        let own = Self.ownExecutable()
        let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
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
    /// LISTEN_PID and WATCHDOG_PID are placeholders that the guard sets to the
    /// app's own pid. `link` is the read end of a pipe only the master writes
    /// to: its end of file tells the guard that the master is gone (a lease
    /// scheduler's link also carries renew deadlines). `grace`: how long the
    /// guard gives the rest of the tree between TERM and SIGKILL.
    func spawn(_ order: SpawnOrder, launch: Launch, sockets: [(fd: Int32, name: String)], token: Int32?,
               link: Int32, grace: Duration, extraEnvironment: [String]) -> Result<Int32, SystemCallError> {
        var inherit: [Int32] = sockets.map(\.fd)
        let tokenSlot = token.map { fd -> String in
            inherit.append(fd)
            return String(2 + inherit.count)
        }
        inherit.append(link)
        let guardSpec = "\(2 + inherit.count):\(max(grace.nanoseconds, 0) / 1_000_000):\(tokenSlot ?? "-")"
        let arguments = [shim, String(masterPID), launch.credentials.shimArgument, guardSpec, launch.executable]
            + launch.arguments
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
