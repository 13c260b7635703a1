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
        if let path = Sys.calls.linkTarget("/proc/self/exe") { return path }
        #endif
        return CommandLine.arguments.first ?? "bellwether"
    }

    /// Where a worker's descriptors go, and the guard's spec of them.
    struct Layout {
        /// (target, fd): the output pipes' write ends at 1 and 2 (when the
        /// worker has pipes), the sockets at 3, 4, …, the token, the link.
        var descriptors: [(target: Int32, fd: Int32)]
        /// LINK:GRACE_MS:TOKEN, the guard's view of the layout.
        var guardSpec: String
    }

    /// `sockets` go to descriptors 3, 4, … (LISTEN_FDS), the token after them,
    /// then `link`: the read end of a pipe only the master writes to, whose
    /// end of file tells the guard that the master is gone (a lease
    /// scheduler's link also carries renew deadlines). `grace`: how long the
    /// guard gives the rest of the tree between TERM and SIGKILL. `output`:
    /// the write ends of the worker's stdout and stderr pipes
    /// (`WorkerOutputs`); nil: the master's own.
    func layout(sockets: [Int32], token: Int32?, link: Int32, grace: Duration,
                output: WorkerOutputs.Pipes?) -> Layout {
        var inherit = sockets
        let tokenSlot = token.map { fd -> String in
            inherit.append(fd)
            return String(2 + inherit.count)
        }
        inherit.append(link)
        let guardSpec = "\(2 + inherit.count):\(max(grace.nanoseconds, 0) / 1_000_000):\(tokenSlot ?? "-")"
        let outputs = output.map { [(Int32(1), $0.stdout.write), (Int32(2), $0.stderr.write)] } ?? []
        return Layout(descriptors: outputs + inherit.enumerated().map { (Int32(3 + $0.offset), $0.element) },
                      guardSpec: guardSpec)
    }

    /// `environment`: the worker's, from `WorkerEnvironment`.
    func spawn(_ launch: Launch, layout: Layout, environment: [String],
               output: WorkerOutputs.Pipes? = nil) -> Result<Int32, SystemCallError> {
        let arguments = [shim, String(masterPID), launch.credentials.shimArgument, layout.guardSpec, launch.executable]
            + launch.arguments
        return Sys.calls.spawn(SpawnRequest(path: shim, arguments: arguments, environment: environment,
                                            descriptors: layout.descriptors.filter { $0.target > 2 }.map(\.fd),
                                            directory: launch.directory,
                                            stdout: output?.stdout.write, stderr: output?.stderr.write))
    }
}
