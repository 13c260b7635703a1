/// One lifecycle event for the log: a short event name, a sentence for the
/// text format, and fields for the JSON format.
public struct LogRecord: Hashable, Sendable {
    public enum Level: String, Hashable, Sendable { case info, warning, error }

    public var level: Level
    public var event: String
    public var message: String
    public var fields: [Field]

    public struct Field: Hashable, Sendable {
        public var key: String
        public var value: Value
        public init(_ key: String, _ value: Value) { self.key = key; self.value = value }
    }

    public enum Value: Hashable, Sendable {
        case int(Int)
        case double(Double)
        case string(String)
        case bool(Bool)
    }

    public init(_ level: Level = .info, _ event: String, _ message: String, _ fields: [Field] = []) {
        self.level = level
        self.event = event
        self.message = message
        self.fields = fields
    }
}
