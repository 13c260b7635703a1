import Testing
@testable import Bellwether
import TestSupport

/// The RESP2 parser, ahead of the Redis lease: whole replies, replies split
/// at every byte boundary, and malformed input that must be an error.
@Suite("RESP parser")
struct RESPTests {
    static let replies: [(String, RESPValue)] = [
        ("+OK\r\n", .simple("OK")),
        ("-ERR wrong number of arguments\r\n", .error("ERR wrong number of arguments")),
        (":1000\r\n", .integer(1000)),
        (":-42\r\n", .integer(-42)),
        ("$5\r\nhello\r\n", .bulk(Array("hello".utf8))),
        ("$0\r\n\r\n", .bulk([])),
        ("$-1\r\n", .bulk(nil)),
        ("$4\r\na\r\nb\r\n", .bulk(Array("a\r\nb".utf8))),
        ("*-1\r\n", .array(nil)),
        ("*0\r\n", .array([])),
        ("*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+a\r\n-b\r\n",
         .array([.integer(1), .bulk(Array("foo".utf8)), .array([.simple("a"), .error("b")])])),
        ("*2\r\n$-1\r\n*-1\r\n", .array([.bulk(nil), .array(nil)])),
    ]

    @Test func wholeReplies() throws {
        for (wire, expected) in Self.replies {
            var parser = RESPParser()
            parser.feed(Array(wire.utf8))
            #expect(try parser.next() == expected, "\(wire.debugDescription)")
            #expect(try parser.next() == nil)
        }
    }

    @Test func everyReplySplitAtEveryByteBoundary() throws {
        let stream = Self.replies.map(\.0).joined()
        let bytes = Array(stream.utf8)
        for cut in 0...bytes.count {
            var parser = RESPParser()
            var parsed: [RESPValue] = []
            parser.feed(bytes[..<cut])
            while let value = try parser.next() { parsed.append(value) }
            parser.feed(bytes[cut...])
            while let value = try parser.next() { parsed.append(value) }
            #expect(parsed == Self.replies.map(\.1), "cut at \(cut)")
        }
        // And one byte at a time.
        var parser = RESPParser()
        var parsed: [RESPValue] = []
        for byte in bytes {
            parser.feed([byte])
            while let value = try parser.next() { parsed.append(value) }
        }
        #expect(parsed == Self.replies.map(\.1))
    }

    @Test(arguments: [
        "!weird\r\n", ":12a\r\n", ":\r\n", "$-2\r\n", "$99999999999\r\nx", "$3\r\nabcd\r\n", "*-5\r\n",
        "+OK\rX", "+OK\n", ":99999999999999999999999\r\n", "*1\r\n!\r\n",
        String(repeating: "*1\r\n", count: 40) + ":1\r\n",
    ])
    func malformedRepliesAreErrors(_ wire: String) {
        var parser = RESPParser()
        parser.feed(Array(wire.utf8))
        #expect(throws: RESPError.self, "\(wire.debugDescription)") { _ = try parser.next() }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SplitMix(seed: 99)
        let alphabet = Array("+-:$*\r\n0123456789-abc".utf8)
        for _ in 0..<20_000 {
            var parser = RESPParser()
            parser.feed((0..<(1 + rng.below(24))).map { _ in alphabet[rng.below(alphabet.count)] })
            for _ in 0..<4 { if (try? parser.next()) == nil { break } }
        }
    }

    @Test func commandsAreArraysOfBulkStrings() {
        #expect(RESPParser.encode(["SET", "k", "v"]) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".utf8))
        #expect(RESPParser.encode(["AUTH", "pässword"]) == Array("*2\r\n$4\r\nAUTH\r\n$9\r\npässword\r\n".utf8))
    }
}
