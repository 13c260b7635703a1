import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Every process the integration tests start goes through `spawnBytes`.
extension Harness {
    /// Runs a command to completion and returns its status and output.
    static func run(_ arguments: [String], environment: [String: String] = [:], removing: [String] = [],
                    timeout: Double = 20) -> (status: Int32, stdout: String, stderr: String) {
        let directory = scratch("run")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = spawn(arguments, environment: environment, removing: removing,
                            stdout: directory + "/out", stderr: directory + "/err")
        let status = finish(process, timeout: timeout).status
        let out = (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? ""
        return (status, out, err)
    }

    /// Waits up to `timeout` for `pid` to exit, SIGKILLs it if it has not,
    /// and returns its exit code.
    static func finish(_ pid: Int32, timeout: Double) -> (status: Int32, timedOut: Bool) {
        var code: Int32?
        if wait(timeout, { code = reap(pid); return code != nil }), let code { return (code, false) }
        return (signalAndReap(pid, SIGKILL), true)
    }

    /// The test process's environment without its bellwether settings (the
    /// chaos and Redis switches among them), with `environment` on top.
    static func childEnvironment(_ environment: [String: String], removing: [String] = []) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for name in removing { env.removeValue(forKey: name) }
        for name in env.keys where name.hasPrefix("BELLWETHER_") || name == "WORKERS_COUNT" {
            env.removeValue(forKey: name)
        }
        for (key, value) in environment { env[key] = value }
        return env
    }

    /// `spawnBytes` with `childEnvironment(environment, removing:)`; a
    /// process that cannot be started stops the test run.
    static func spawn(_ arguments: [String], environment: [String: String] = [:], removing: [String] = [],
                      stdout: String, stderr: String, appending: Bool = false, newSession: Bool = false,
                      closeInherited: Bool = false, passing descriptor: Int32? = nil) -> Int32 {
        let env = childEnvironment(environment, removing: removing)
        let pid = spawnBytes(arguments.map { Array($0.utf8) }, environment: env.map { Array("\($0.key)=\($0.value)".utf8) },
                             stdout: stdout, stderr: stderr, appending: appending, newSession: newSession,
                             closeInherited: closeInherited, passing: descriptor)
        precondition(pid > 0, "posix_spawn \(arguments[0]): \(-pid)")
        return pid
    }

    /// posix_spawn with argv and environ as bytes (which `[String]` cannot
    /// carry when they are not UTF-8): stdin from /dev/null, stdout and stderr
    /// to files — one open file when they name the same path, so that neither
    /// overwrites the other — an empty signal mask. `newSession`: the child
    /// leads a session of its own; `closeInherited`: it gets no descriptor
    /// of ours above 2 (above 3 when `passing`); `passing`: our `descriptor`
    /// is its 3. The pid, or -errno.
    static func spawnBytes(_ argv: [[UInt8]], environment: [[UInt8]], stdout: String, stderr: String,
                           appending: Bool = false, newSession: Bool = false, closeInherited: Bool = false,
                           passing descriptor: Int32? = nil) -> Int32 {
        let mode = O_WRONLY | O_CREAT | (appending ? O_APPEND : O_TRUNC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, mode, 0o644)
        if stderr == stdout {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, mode, 0o644)
        }
        // The dup2 clears close-on-exec on 3, which every socket of ours has.
        if let descriptor { posix_spawn_file_actions_adddup2(&actions, descriptor, 3) }
        if closeInherited, let closeFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(closeFrom, to: CloseFrom.self)(&actions, descriptor == nil ? 3 : 4)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        let setSession: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc ≥ 2.26), not imported into Swift
        posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGMASK) | (newSession ? setSession : 0)))
        func cStrings(_ list: [[UInt8]]) -> [UnsafeMutablePointer<CChar>?] {
            list.map { bytes in
                let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
                bytes.withUnsafeBytes { UnsafeMutableRawPointer(pointer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                pointer[bytes.count] = 0
                return pointer
            } + [nil]
        }
        let (cArgv, cEnviron) = (cStrings(argv), cStrings(environment))
        defer { (cArgv + cEnviron).forEach { $0?.deallocate() } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, cArgv[0]!, &actions, &attributes, cArgv, cEnviron)
        return error == 0 ? pid : -error
    }

    /// glibc ≥ 2.34; not imported into Swift.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt
}
