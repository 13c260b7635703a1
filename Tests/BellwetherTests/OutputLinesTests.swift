import Testing
@testable import Bellwether

/// `OutputLines`: however the reads cut a stream, the lines that come out
/// are the stream's lines, long ones in bounded pieces, with no byte lost.
@Suite struct OutputLinesTests {
    /// The pieces `OutputLines` makes of `stream` fed in reads of `sizes` (cycled).
    static func pieces(_ stream: [UInt8], reads sizes: [Int]) -> [[UInt8]] {
        var lines = OutputLines()
        var out: [[UInt8]] = []
        var offset = 0, turn = 0
        while offset < stream.count {
            let size = min(sizes[turn % sizes.count], stream.count - offset)
            lines.feed(stream[offset..<offset + size]) { out.append(Array($0)) }
            offset += size
            turn += 1
        }
        lines.finish { out.append(Array($0)) }
        return out
    }

    @Test func linesComeOutWholeWhereverTheReadsFall() {
        let stream = Array("one\ntwo\n\nthree\nlast without newline".utf8)
        for sizes in [[1], [2, 3], [5], [7, 1], [stream.count]] {
            #expect(Self.pieces(stream, reads: sizes).map { String(decoding: $0, as: UTF8.self) }
                == ["one", "two", "", "three", "last without newline"], "reads of \(sizes)")
        }
    }

    @Test func aLongLineIsSplitWithoutLosingBytes() {
        let max = OutputLines.maximumLine
        var generator = SystemRandomNumberGenerator()
        let long = (0..<(max * 2 + 100)).map { _ in UInt8.random(in: 0x20...0xff, using: &generator) }
        let stream = long + [UInt8(ascii: "\n")] + Array("next\n".utf8)
        for sizes in [[4096], [max], [max + 1, 7], [100_000]] {
            let pieces = Self.pieces(stream, reads: sizes)
            #expect(pieces.map(\.count) == [max, max, 100, 4], "reads of \(sizes)")
            #expect(Array(pieces.prefix(3).joined()) == long)
        }
    }

    @Test func nothingIsHeldBackOnceALineEnds() {
        var lines = OutputLines()
        var out: [String] = []
        lines.feed(Array("a\nb".utf8)) { out.append(String(decoding: $0, as: UTF8.self)) }
        #expect(out == ["a"])
        #expect(!lines.isEmpty)
        lines.feed(Array("\n".utf8)) { out.append(String(decoding: $0, as: UTF8.self)) }
        #expect(out == ["a", "b"])
        #expect(lines.isEmpty)
    }
}
