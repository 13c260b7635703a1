/// The text of `bellwether --help`. The options come from `OptionSpec.all`;
/// the tables mirror the README and the manual page.
enum Help {
    static var text: String {
        var lines = [
            "usage: bellwether [OPTIONS] [--] COMMAND [ARG...]",
            "       bellwether status [--json] | reload | stop | scale N  [-s PATH] [-p PATH] [-c FILE]",
            "",
            "Run COMMAND as N worker processes; exactly one live worker gets WORKER_ROLE=scheduler.",
            "Options stop at the first argument that is not an option (or at --).",
            "",
            "options:",
        ]
        for spec in OptionSpec.all {
            var names = spec.short.map { "-\($0), " } ?? "    "
            names += "--" + spec.long + (spec.valueName.map { " " + $0 } ?? "")
            lines.append("  " + names.padded(to: 30) + " " + spec.help)
        }
        lines += [
            "",
            "Settings come from flags, then the environment (WORKERS_COUNT, BELLWETHER_<OPTION>),",
            "then the config file, then defaults. Config keys are the long option names.",
            "",
            "each worker gets:",
            "  WORKER_ROLE         scheduler (exactly one live worker) or worker; see --role-env",
            "  WORKERS_COUNT       N",
            "  WORKER_ID           its slot, 0..N-1, kept by its replacements; the scheduler is slot 0",
            "  WORKER_GENERATION   0 at start, +1 at every reload",
            "  TZ                  with --timezone",
            "  LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID",
            "                      with --bind: sockets at fds 3, 4, ..., their names, the worker's pid",
            "  NOTIFY_SOCKET       the master's sd_notify socket (READY=1, WATCHDOG=1, STATUS=...,",
            "                      X_BELLWETHER_RECYCLE=1 to ask for a planned replacement)",
            "  WATCHDOG_USEC, WATCHDOG_PID  with --timeout",
            "  WORKER_FENCING_TOKEN, WORKER_LEASE_HOLDER",
            "                      the scheduler, with a network lease: the lease's fence and holder",
            "",
            "Each worker runs under its guard (bellwether-exec), which keeps the scheduler token from the",
            "app: every process the app starts (forked, setsid) goes with it when it exits, is retired, or",
            "the master dies, SIGKILL included; a slot and the token are free once nothing of it is left.",
            "",
            "With --lease redis://... or postgres://..., BELLWETHER_LEASE_PASSWORD gives the password (kept",
            "out of ps; for postgres://, else PGPASSWORD). postgres:// takes libpq's sslmode and sslrootcert.",
            "rediss://... is the same over TLS (the system's libssl.so.3, loaded at run time): the server's",
            "certificate is checked against the system's CAs and HOST; &cacert=PATH trusts only that file's",
            "CAs; &insecure=1 checks nothing (encrypted, but the server is not authenticated).",
            "Rules: --lease-renew-deadline >= 3 x --lease-renew-interval; deadline + interval < --lease-ttl;",
            "--lease-takeover-delay >= --lease-renew-deadline + --lease-grace.",
            "",
            "commands, to a running master over its control socket (-s PATH, else the default socket",
            "of the pid in -p PATH, else the only running master's in the runtime directory):",
            "  status [--json]  the workers: slot, pid, role, generation, state, uptime, restarts,",
            "                   recyclings, last exit, and a slot backing off with its next attempt; the",
            "                   scheduler's pid and the lease's state",
            "  reload, stop     what HUP and TERM do",
            "  scale N          run N workers until the next reload, as TTIN/TTOU do",
            "",
            "signals:",
            "  HUP         reload: re-read the config file, start a new generation one worker at a time,",
            "              retire old workers as replacements become ready; a stand-in worker serves the",
            "              scheduler's slot until the new scheduler (started once the old one is reaped)",
            "              is ready; a generation that cannot become ready is abandoned, the old one serves",
            "  TERM        graceful stop: TERM to workers, SIGKILL after --graceful-timeout, exit 0",
            "  INT, QUIT   quick stop: TERM to workers, SIGKILL after 1 s (or --graceful-timeout), exit 0",
            "  TTIN, TTOU  one worker more / one fewer (never below 1, never the scheduler)",
            "  USR1        forwarded to every worker",
            "",
            "exit status:",
            "  0    stopped by TERM, INT or QUIT; --help, --version, --check-config",
            "  3    failed start: before any generation was ready, a slot failed to boot --boot-attempts",
            "       times in a row, or no worker was ready within --ready-timeout; the master stopped",
            "  64   bad option, option value, environment value, --env entry, address or lease timings;",
            "       a --watch path that does not exist, or --watch without inotify (not Linux); --preload",
            "       with a command that is not Python",
            "  69   an address cannot be bound (in use, permission denied); a lease that needs TLS (rediss://,",
            "       sslmode=require or stricter) without a loadable libssl.so.3; a command: no master answers",
            "  71   a system call failed at start, or bellwether-exec (or, for --preload, the fork server) is missing",
            "  73   cannot create the pidfile, token file or control socket, the pidfile is locked by a",
            "       running master or is a symbolic link, another master uses the control socket, or the",
            "       runtime directory is not this user's alone",
            "  77   redis or postgres refused the lease's login, database or table at start, or its TLS",
            "       certificate failed verification or the CA file cannot be used; --user or --group without root;",
            "       a command: the control socket is another user's or open to others, or the master",
            "       refused this user",
            "  78   config file unreadable or malformed",
            "  126  COMMAND cannot be executed (with --user: by that user), or --user cannot enter --chdir",
            "  127  COMMAND not found in the workers' PATH (with --user: where that user may search)",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    func padded(to width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
