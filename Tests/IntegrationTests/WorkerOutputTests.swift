import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--worker-output prefix|json`: the workers' stdout and stderr come out of
/// the master, every line labelled with the slot, role and guard pid of the
/// worker that wrote it, none lost, none doubled, in order per stream.
@Suite("Worker output", .serialized, .ownThread, .timeLimit(.minutes(3)))
struct WorkerOutputTests {
    static func bytes(_ path: String) -> [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? [] }

    /// The complete lines of a file, as bytes.
    static func lines(_ path: String) -> [ArraySlice<UInt8>] {
        bytes(path).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
    }

    static func label(_ record: WorkerRecord) -> String { "\(record.slot)/\(record.role)/\(record.guardPID) | " }

    static func has(_ path: String, _ line: String) -> Bool { lines(path).contains { $0.elementsEqual(line.utf8) } }

    /// Each worker's stdout lines on the master's stdout, its stderr lines on
    /// the master's stderr, under its own label; invalid UTF-8 passes as it
    /// came; the last line, without a newline, comes out when the pipe closes.
    @Test func prefixLabelsEveryLineWithSlotRoleAndPid() throws {
        let directory = Harness.scratch("output-prefix")
        let out = directory + "/stdout"
        let sup = Supervisor(["-w", "2", "--worker-output", "prefix"], worker: ["--say"], directory: directory,
                             stdout: out)
        #expect(Harness.wait { sup.settled(workers: 2) }, "\(sup.logText())")
        let records = sup.live()
        try #require(records.count == 2)
        for record in records {
            #expect(Harness.wait { Self.has(out, Self.label(record) + "hello out \(record.slot)") },
                    "\(String(decoding: Self.bytes(out), as: UTF8.self))")
            #expect(Harness.wait { Self.has(sup.log, Self.label(record) + "hello err \(record.slot)") },
                    "\(sup.logText())")
            let bad = Array(Self.label(record).utf8) + [0xff, 0xfe] + Array(" bad \(record.slot)".utf8)
            #expect(Self.lines(sup.log).contains { $0.elementsEqual(bad) }, "\(sup.logText())")
        }
        #expect(!String(decoding: Self.bytes(out), as: UTF8.self).contains("hello err"))
        #expect(!sup.logText().contains("hello out"))
        #expect(sup.stop() == 0)
        for record in records {
            #expect(Self.has(out, Self.label(record) + "partial \(record.slot)"),
                    "\(String(decoding: Self.bytes(out), as: UTF8.self))")
        }
    }

    /// One JSON object per line on the master's stderr, with slot, role, pid
    /// and stream; invalid UTF-8 becomes U+FFFD and the line stays valid JSON.
    @Test func jsonMakesEveryLineOneLogObject() throws {
        let directory = Harness.scratch("output-json")
        let out = directory + "/stdout"
        let sup = Supervisor(["-w", "2", "--worker-output", "json", "--log-format", "json"], worker: ["--say"],
                             directory: directory, stdout: out)
        #expect(Harness.wait { sup.settled(workers: 2) }, "\(sup.logText())")
        let records = sup.live()
        try #require(records.count == 2)
        func objects() -> [[String: Any]] {
            Self.lines(sup.log).compactMap {
                try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any]
            }
        }
        func found(_ record: WorkerRecord, _ message: String, _ stream: String) -> Bool {
            objects().contains {
                $0["event"] as? String == "worker_output" && $0["message"] as? String == message
                    && $0["stream"] as? String == stream && $0["slot"] as? Int == record.slot
                    && $0["role"] as? String == record.role && $0["pid"] as? Int == Int(record.guardPID)
                    && $0["level"] as? String == "info" && $0["master"] as? Int == Int(sup.pid)
            }
        }
        for record in records {
            #expect(Harness.wait { found(record, "hello out \(record.slot)", "stdout") }, "\(sup.logText())")
            #expect(Harness.wait { found(record, "hello err \(record.slot)", "stderr") }, "\(sup.logText())")
            #expect(Harness.wait { found(record, "\u{FFFD}\u{FFFD} bad \(record.slot)", "stderr") }, "\(sup.logText())")
        }
        #expect(sup.stop() == 0)
        for record in records {
            #expect(found(record, "partial \(record.slot)", "stdout"), "\(sup.logText())")
        }
        // Every line of the log is one JSON object: the master's own and the workers'.
        #expect(objects().count == Self.lines(sup.log).count, "\(sup.logText())")
        #expect(Self.bytes(out).isEmpty, "json mode writes nothing to stdout")
    }

    /// A worker writing 200,000 lines on each stream as fast as it can, and
    /// another writing a line every millisecond: every flood line comes out
    /// once and in order, and the slow worker's lines come out in between.
    @Test func aFloodLosesNothingAndStarvesNobody() throws {
        let count = 200_000
        let directory = Harness.scratch("output-flood")
        let out = directory + "/stdout"
        let sup = Supervisor(["-w", "2", "--worker-output", "prefix"], worker: ["--flood", String(count)],
                             directory: directory, stdout: out)
        #expect(Harness.wait { sup.settled(workers: 2) }, "\(sup.logText())")
        let records = sup.live()
        let flooder = try #require(records.first { $0.slot == 0 })
        let trickler = try #require(records.first { $0.slot == 1 })
        #expect(Harness.wait { Self.has(out, Self.label(trickler) + "trickle 1") })
        #expect(FileManager.default.createFile(atPath: directory + "/flood.go", contents: nil))
        #expect(Harness.wait(120) { Self.has(sup.log, Self.label(flooder) + "err \(count)") })
        #expect(Harness.wait(120) { Self.has(out, Self.label(flooder) + "out \(count)") })
        #expect(sup.stop() == 0)

        let floodLabel = Array(Self.label(flooder).utf8), trickleLabel = Array(Self.label(trickler).utf8)
        func numbered(_ lines: [ArraySlice<UInt8>], _ label: [UInt8], _ word: String) -> [(index: Int, text: String)] {
            let head = label + Array("\(word) ".utf8)
            return lines.enumerated().compactMap { index, line in
                line.starts(with: head) ? (index, String(decoding: line.dropFirst(head.count), as: UTF8.self)) : nil
            }
        }
        let stdout = Self.lines(out), stderr = Self.lines(sup.log)
        let outs = numbered(stdout, floodLabel, "out"), errs = numbered(stderr, floodLabel, "err")
        #expect(outs.map(\.text) == (1...count).map(String.init) + ["end"], "every stdout line once, in order")
        #expect(errs.map(\.text) == (1...count).map(String.init), "every stderr line once, in order")
        let trickles = numbered(stdout, trickleLabel, "trickle")
        #expect(trickles.map(\.text) == (0..<trickles.count).map { String($0 + 1) }, "the slow worker's lines, in order")
        if let first = outs.first?.index, let last = outs.dropLast().last?.index {
            #expect(trickles.contains { $0.index > first && $0.index < last }, "the slow worker is heard during the flood")
        }
        let labelled = Set([floodLabel, trickleLabel])
        #expect(stdout.allSatisfy { line in labelled.contains { line.starts(with: $0) } }, "nothing else, nothing cut")
    }

    /// The master's stdout is a FIFO nobody reads: once it is full, the
    /// master stops reading the flooding worker rather than blocking or
    /// dropping — it still answers `bellwether status` — and once the FIFO
    /// is read again every line comes through, once and in order.
    @Test func aFullOutputHoldsTheWorkersBackNotTheMaster() throws {
        let count = 200_000
        let directory = Harness.scratch("output-backpressure")
        let fifo = directory + "/stdout.fifo", socket = directory + "/ctl"
        try #require(mkfifo(fifo, 0o600) == 0)
        let reader = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        try #require(reader >= 0)
        defer { close(reader) }
        let sup = Supervisor(["-w", "2", "--worker-output", "prefix", "--control-socket", socket],
                             worker: ["--flood", String(count)], directory: directory, stdout: fifo)
        #expect(Harness.wait { sup.settled(workers: 2) }, "\(sup.logText())")
        let flooder = try #require(sup.live().first { $0.slot == 0 })
        #expect(FileManager.default.createFile(atPath: directory + "/flood.go", contents: nil))

        // A write end of our own tells when the FIFO is full: it then polls unwritable.
        let probe = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        try #require(probe >= 0)
        func full() -> Bool {
            var entry = pollfd(fd: probe, events: Int16(POLLOUT), revents: 0)
            return poll(&entry, 1, 0) == 0
        }
        #expect(Harness.wait(60) { full() }, "the master's stdout fills up")
        let status = Harness.run([Harness.bellwether, "status", "--control-socket", socket])
        #expect(status.status == 0 && status.stdout.contains("scheduler"), "\(status)")
        #expect(full(), "still full: nothing read it meanwhile")
        close(probe)
        #expect(sup.isRunning())

        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let last = Array((Self.label(flooder) + "out \(count)\n").utf8)
        func readAll() {
            while true {
                let n = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if n <= 0 { return }
                received += chunk[..<n]
            }
        }
        #expect(Harness.wait(120) {
            readAll()
            return received.suffix(1 << 16).split(separator: UInt8(ascii: "\n")).contains {
                $0.elementsEqual(last.dropLast())
            }
        })
        #expect(sup.stop() == 0)
        readAll()
        let head = Array((Self.label(flooder) + "out ").utf8)
        let outs = received.split(separator: UInt8(ascii: "\n")).filter { $0.starts(with: head) }
            .map { String(decoding: $0.dropFirst(head.count), as: UTF8.self) }
        #expect(outs == (1...count).map(String.init) + ["end"], "every line once, in order")
    }
}
