#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CBellwether

/// Spawns workers through the exec shim: posix_spawn (never fork) of
/// `bellwether-exec MASTER_PID APP ARGV...` in a new process group, with an
/// empty signal mask, default dispositions and stdin on /dev/null; the
/// scheduler also gets the token descriptor at fd 3.
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

    func spawn(_ order: SpawnOrder, launch: Launch, token: Int32?) -> Result<Int32, SystemCallError> {
        let arguments = [shim, String(masterPID), launch.executable] + launch.arguments
        let environment = launch.environment + [
            "WORKERS_COUNT=\(order.workersCount)", "WORKER_ID=\(order.slot)",
            "WORKER_GENERATION=\(order.generation)", "\(launch.roleVariable)=\(order.role.rawValue)",
        ]
        let inherit: [Int32] = token.map { [$0] } ?? []
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
