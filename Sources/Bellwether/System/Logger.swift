#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one line per record to stderr, as text or JSON. One instance is
/// shared by the whole shell, so that a reload's new format applies everywhere.
public final class Logger: @unchecked Sendable {
    public var format: LogFormat
    let masterPID: Int32

    public init(format: LogFormat) {
        self.format = format
        self.masterPID = Sys.calls.processID()
    }

    func write(_ happening: MasterHappening) { write(happening.record) }

    public func write(_ record: LogRecord) {
        let line = format == .json ? json(record) : text(record)
        try? Sys.writeAll(2, Array((line + "\n").utf8))
    }

    func text(_ record: LogRecord) -> String {
        let level = record.level == .info ? "" : record.level.rawValue + ": "
        return "\(Self.timestamp()) bellwether[\(masterPID)]: \(level)\(record.message)"
    }

    func json(_ record: LogRecord) -> String {
        var parts = [
            "\"time\":\(quoted(Self.timestamp()))", "\"level\":\"\(record.level.rawValue)\"",
            "\"master\":\(masterPID)", "\"event\":\(quoted(record.event))", "\"message\":\(quoted(record.message))",
        ]
        for field in record.fields {
            let value: String
            switch field.value {
            case .int(let number): value = String(number)
            case .double(let number): value = number.isFinite ? String(number) : "null"
            case .bool(let flag): value = flag ? "true" : "false"
            case .string(let text): value = quoted(text)
            }
            parts.append("\(quoted(field.key)):\(value)")
        }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// UTC, millisecond precision: 2026-11-21T05:25:27.123Z.
    static func timestamp() -> String {
        let clock = Sys.calls.realtimeNow()
        var seconds = time_t(clock.seconds)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(clock.nanoseconds / 1_000_000), 3))Z"
    }
}
