#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// Spawns workers through the exec shim: posix_spawn (never fork) of
/// `bellwether-exec MASTER_PID APP ARGV...` in a new process group, with an
/// empty signal mask, default dispositions and stdin on /dev/null; the
/// listening sockets at fds 3, 4, … and, for the scheduler, the token after them.
struct Spawner {
    let shim: String
    let masterPID: Int32

    /// The shim beside our own executable.
    static func locateShim() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        var own = CommandLine.arguments.first ?? "bellwether"
        #if os(Linux)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if length > 0 { own = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        #endif
        let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
        return directory + "/bellwether-exec"
    }

    /// `sockets` go to descriptors 3, 4, … (LISTEN_FDS), the token after them.
    /// LISTEN_PID and WATCHDOG_PID are placeholders that the shim sets to the
    /// worker's own pid.
    func spawn(_ order: SpawnOrder, launch: Launch, sockets: [(fd: Int32, name: String)], token: Int32?,
               extraEnvironment: [String]) -> Result<Int32, SystemCallError> {
        let arguments = [shim, String(masterPID), launch.executable] + launch.arguments
        var environment = launch.environment + extraEnvironment + [
            "WORKERS_COUNT=\(order.workersCount)", "WORKER_ID=\(order.slot)",
            "WORKER_GENERATION=\(order.generation)", "\(launch.roleVariable)=\(order.role.rawValue)",
        ]
        if !sockets.isEmpty {
            environment += ["LISTEN_FDS=\(sockets.count)", "LISTEN_FDNAMES=" + sockets.map(\.name).joined(separator: ":"),
                            "LISTEN_PID=0"]
        }
        let inherit: [Int32] = sockets.map(\.fd) + (token.map { [$0] } ?? [])
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
