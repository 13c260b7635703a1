#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--worker-output prefix|json`: each worker's stdout and stderr are pipes
/// the master reads from its poll loop, and every line goes out labelled —
/// `SLOT/ROLE/PID | line` to the master's stdout or stderr (`prefix`), or
/// one JSON log object on the master's stderr (`json`).
///
/// The master's loop never blocks on them: the read ends are non-blocking;
/// a write to the master's stdout or stderr follows a poll that says it is
/// writable and is at most `PIPE_BUF` bytes. When the master's output cannot
/// keep up, the lines wait in a bounded outbox and the pipes feeding it are
/// not read until it drains — the workers then block on their writes
/// (backpressure), and nothing is dropped. Each pipe gives at most
/// `readChunk` bytes a turn, in turn, so that one flooding worker cannot
/// starve the others.
final class WorkerOutputs {
    enum Stream: String { case stdout, stderr }

    /// Who wrote a line: a worker (its slot and role), or a fork server (no slot).
    struct Label: Hashable {
        var slot: Int?
        var role: String
        var pid: Int32

        init(slot: Int, role: Role, pid: Int32) {
            self.slot = slot
            self.role = role.rawValue
            self.pid = pid
        }

        /// `--preload`'s fork server of a generation: `-/forkserver/PID`.
        init(forkServer pid: Int32) {
            slot = nil
            role = "forkserver"
            self.pid = pid
        }
    }

    /// The read ends and write ends of one worker's two pipes.
    struct Pipes {
        var stdout: (read: Int32, write: Int32)
        var stderr: (read: Int32, write: Int32)
    }

    static let readChunk = 16 * 1024
    /// An outbox this full stops the reading of the pipes that feed it.
    static let outboxLimit = 64 * 1024
    /// Writes of at most PIPE_BUF bytes to a pipe that polled writable do not block.
    static let writeChunk = 4096
    /// Reads of one pipe at a worker's reap, in case a stray keeps writing.
    static let drainReads = 64

    private final class Source {
        let fd: Int32
        let label: Label
        let stream: Stream
        let mode: WorkerOutput
        /// `SLOT/ROLE/PID | `, for `prefix`.
        let prefix: [UInt8]
        var lines = OutputLines()

        init(fd: Int32, label: Label, stream: Stream, mode: WorkerOutput) {
            self.fd = fd
            self.label = label
            self.stream = stream
            self.mode = mode
            prefix = Array("\(label.slot.map(String.init) ?? "-")/\(label.role)/\(label.pid) | ".utf8)
        }

        /// The master's descriptor its lines go to.
        var destination: Int32 { mode == .prefix && stream == .stdout ? 1 : 2 }
    }

    /// Formatted lines waiting for the master's stdout (1) or stderr (2).
    private struct Outbox {
        var bytes: [UInt8] = []
        var start = 0
        var count: Int { bytes.count - start }

        mutating func consume(_ written: Int) {
            start += written
            if start == bytes.count {
                bytes.removeAll(keepingCapacity: true)
                start = 0
            } else if start > 1 << 16 {
                bytes.removeSubrange(..<start)
                start = 0
            }
        }
    }

    private enum Target {
        case read(Source)
        case write(Int32)
    }

    private let logger: Logger
    private var sources: [Source] = []
    private var outboxes: [Int32: Outbox] = [1: Outbox(), 2: Outbox()]
    private var polled: [Target] = []
    private var turn = 0
    private var buffer = [UInt8](repeating: 0, count: readChunk)

    init(logger: Logger) { self.logger = logger }

    /// Two close-on-exec pipes whose read ends do not block.
    func openPipes() -> Result<Pipes, SystemCallError> {
        switch Sys.calls.pipe(nonBlockingWrite: false) {
        case .failure(let error): return .failure(error)
        case .success(let out):
            switch Sys.calls.pipe(nonBlockingWrite: false) {
            case .failure(let error):
                Sys.closeFile(out.read)
                Sys.closeFile(out.write)
                return .failure(error)
            case .success(let err):
                Sys.calls.setNonBlocking(out.read)
                Sys.calls.setNonBlocking(err.read)
                return .success(Pipes(stdout: out, stderr: err))
            }
        }
    }

    /// After the spawn: the write ends are the worker's alone now; the read
    /// ends are read for `label`'s lines, or closed if the spawn failed.
    func adopt(_ pipes: Pipes, label: Label?, mode: WorkerOutput) {
        Sys.closeFile(pipes.stdout.write)
        Sys.closeFile(pipes.stderr.write)
        guard let label else {
            Sys.closeFile(pipes.stdout.read)
            Sys.closeFile(pipes.stderr.read)
            return
        }
        sources.append(Source(fd: pipes.stdout.read, label: label, stream: .stdout, mode: mode))
        sources.append(Source(fd: pipes.stderr.read, label: label, stream: .stderr, mode: mode))
    }

    /// The pipes with room in their outbox, to read; the outboxes with lines, to write.
    var pollEntries: [(fd: Int32, events: Int16)] {
        polled = sources.filter { outboxes[$0.destination, default: Outbox()].count < Self.outboxLimit }.map { .read($0) }
            + outboxes.keys.sorted().filter { outboxes[$0, default: Outbox()].count > 0 }.map { .write($0) }
        return polled.map { target in
            switch target {
            case .read(let source): (source.fd, Int16(POLLIN))
            case .write(let fd): (fd, Int16(POLLOUT))
            }
        }
    }

    /// Reads the pipes that are ready, one chunk each, starting one further
    /// along every turn; then writes what the master's output takes.
    func serve(_ revents: [Int16]) {
        var ready: [Source] = []
        for (index, target) in polled.enumerated() where index < revents.count && revents[index] != 0 {
            if case .read(let source) = target { ready.append(source) }
        }
        polled = []
        if !ready.isEmpty {
            turn = (turn + 1) % ready.count
            for source in ready[turn...] + ready[..<turn]
            where outboxes[source.destination, default: Outbox()].count < Self.outboxLimit {
                _ = read(source)
            }
        }
        for fd in outboxes.keys.sorted() where outboxes[fd, default: Outbox()].count > 0 { flush(fd, wait: 0, chunks: 64) }
    }

    /// At a worker's reap: what its pipes still hold. They close at their
    /// end of file, which comes once the worker's whole tree is gone.
    func drain(pid: Int32) {
        for source in sources where source.label.pid == pid { drain(source) }
    }

    /// At the master's exit: the rest of every pipe, then of every outbox,
    /// waiting at most a second for each chunk to be taken.
    func finish() {
        for source in sources {
            drain(source)
            source.lines.finish { emit($0, from: source) }
            close(source)
        }
        for fd in outboxes.keys.sorted() { flush(fd, wait: 1000, chunks: .max) }
    }

    private func drain(_ source: Source) {
        var reads = 0
        while reads < Self.drainReads && read(source) { reads += 1 }
    }

    /// One read of `source`: false once there is nothing more to read now.
    private func read(_ source: Source) -> Bool {
        guard sources.contains(where: { $0 === source }) else { return false }
        let count = buffer.withUnsafeMutableBytes { Sys.calls.read(source.fd, into: $0) }
        if count > 0 {
            source.lines.feed(buffer[..<count]) { emit($0, from: source) }
            return true
        }
        if count == -Int(EINTR) { return true }
        if count == -Int(EAGAIN) || count == -Int(EWOULDBLOCK) { return false }
        // End of file, or an error that will not go away.
        source.lines.finish { emit($0, from: source) }
        close(source)
        return false
    }

    private func close(_ source: Source) {
        sources.removeAll { $0 === source }
        Sys.closeFile(source.fd)
    }

    private func emit(_ line: ArraySlice<UInt8>, from source: Source) {
        let destination = source.destination
        var outbox = outboxes[destination, default: Outbox()]
        outboxes[destination] = nil  // appended to in place
        switch source.mode {
        case .prefix, .inherit:
            outbox.bytes += source.prefix
            outbox.bytes += line
        case .json:
            let happening = MasterHappening.workerOutput(
                slot: source.label.slot, role: source.label.role, pid: source.label.pid,
                stream: source.stream.rawValue, line: String(decoding: line, as: UTF8.self))
            outbox.bytes += logger.json(happening.record).utf8
        }
        outbox.bytes.append(UInt8(ascii: "\n"))
        outboxes[destination] = outbox
    }

    /// Writes at most `chunks` chunks from the outbox of `fd` while a poll
    /// (waiting `wait` milliseconds) says that it takes more. A destination that fails
    /// otherwise (EPIPE: nobody reads the master's output) loses its lines,
    /// so that the workers are not held up for ever.
    private func flush(_ fd: Int32, wait: Int32, chunks limit: Int) {
        guard var outbox = outboxes[fd] else { return }
        outboxes[fd] = nil
        defer { outboxes[fd] = outbox }
        var chunks = 0
        while outbox.count > 0 && chunks < limit {
            // POLLERR or POLLHUP without POLLOUT: the write says what is wrong.
            guard Sys.calls.poll([(fd, Int16(POLLOUT))], timeout: wait).first ?? 0 != 0 else { return }
            var size = min(outbox.count, Self.writeChunk)
            // Whole lines where they fit, so that the master's own log lines
            // on stderr fall between lines, not inside one.
            if size < outbox.count,
               let newline = outbox.bytes[outbox.start..<outbox.start + size].lastIndex(of: UInt8(ascii: "\n")) {
                size = newline + 1 - outbox.start
            }
            let written = outbox.bytes.withUnsafeBytes {
                Sys.calls.write(fd, UnsafeRawBufferPointer(rebasing: $0[outbox.start..<outbox.start + size]))
            }
            if written > 0 {
                outbox.consume(written)
                chunks += 1
            } else if written == -Int(EAGAIN) || written == -Int(EWOULDBLOCK) {
                return
            } else if written != -Int(EINTR) {
                outbox = Outbox()
                return
            }
        }
    }
}
