/// RESP2, the Redis protocol: replies parsed incrementally from whatever
/// bytes have arrived, commands encoded as arrays of bulk strings. The parser
/// never traps on hostile input: every malformed reply is a `RESPError`.
public enum RESPValue: Hashable, Sendable {
    case simple(String)
    case error(String)
    case integer(Int64)
    /// nil: the null bulk string ($-1).
    case bulk([UInt8]?)
    /// nil: the null array (*-1).
    case array([RESPValue]?)
}

public struct RESPError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
}

public struct RESPParser: IncrementalParser, Sendable {
    /// Limits that keep a broken or hostile peer from exhausting memory.
    public static let maximumBulk = 64 << 20
    public static let maximumElements = 1 << 20
    public static let maximumDepth = 16
    public static let maximumLine = 64 << 10

    /// What has arrived; `start` is where the next message begins.
    var buffer: [UInt8] = []
    var start = 0

    public init() {}

    /// The next complete reply, nil if more bytes are needed.
    public mutating func next() throws(RESPError) -> RESPValue? {
        var position = start
        guard let value = try parse(at: &position, depth: 0) else { return nil }
        start = position
        return value
    }

    private func parse(at position: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard depth <= Self.maximumDepth else { throw RESPError(description: "nesting deeper than \(Self.maximumDepth)") }
        guard position < buffer.count else { return nil }
        let kind = buffer[position]
        var cursor = position + 1
        guard let line = try readLine(at: &cursor) else { return nil }
        switch kind {
        case UInt8(ascii: "+"):
            position = cursor
            return .simple(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            position = cursor
            return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            position = cursor
            return .integer(try Self.integer(line))
        case UInt8(ascii: "$"):
            let length = try Self.integer(line)
            if length == -1 {
                position = cursor
                return .bulk(nil)
            }
            guard length >= 0, length <= Self.maximumBulk else {
                throw RESPError(description: "bad bulk length \(length)")
            }
            let end = cursor + Int(length)
            guard end + 2 <= buffer.count else { return nil }
            guard buffer[end] == 13, buffer[end + 1] == 10 else {
                throw RESPError(description: "bulk string not followed by CRLF")
            }
            position = end + 2
            return .bulk(Array(buffer[cursor..<end]))
        case UInt8(ascii: "*"):
            let count = try Self.integer(line)
            if count == -1 {
                position = cursor
                return .array(nil)
            }
            guard count >= 0, count <= Self.maximumElements else {
                throw RESPError(description: "bad array length \(count)")
            }
            var elements: [RESPValue] = []
            for _ in 0..<count {
                guard let element = try parse(at: &cursor, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            position = cursor
            return .array(elements)
        default:
            throw RESPError(description: "unknown reply type byte \(kind)")
        }
    }

    /// The bytes up to CRLF, moving `cursor` past it; nil if it has not arrived.
    private func readLine(at cursor: inout Int) throws(RESPError) -> ArraySlice<UInt8>? {
        var index = cursor
        while index < buffer.count {
            if buffer[index] == 13 {
                guard index + 1 < buffer.count else { return nil }
                guard buffer[index + 1] == 10 else { throw RESPError(description: "CR not followed by LF") }
                let line = buffer[cursor..<index]
                cursor = index + 2
                return line
            }
            if buffer[index] == 10 { throw RESPError(description: "LF without CR") }
            index += 1
        }
        if index - cursor > Self.maximumLine { throw RESPError(description: "line longer than \(Self.maximumLine)") }
        return nil
    }

    private static func integer(_ line: ArraySlice<UInt8>) throws(RESPError) -> Int64 {
        let text = String(decoding: line, as: UTF8.self)
        guard !text.isEmpty, text.count <= 20, let value = Int64(text) else {
            throw RESPError(description: "bad integer \"\(text.prefix(24))\"")
        }
        return value
    }

    /// A command as RESP: an array of bulk strings.
    public static func encode(_ arguments: [String]) -> [UInt8] {
        var out = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            let bytes = Array(argument.utf8)
            out += Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
        }
        return out
    }
}
