/// Cuts one stream of bytes into lines, however the reads fall: a partial
/// line waits for its newline (or for `finish`, at end of file), and a line
/// longer than `maximumLine` bytes goes out in pieces of that many bytes, so
/// that no byte is lost and the buffer stays bounded. Bytes are not
/// decoded: invalid UTF-8 is the formatter's concern.
struct OutputLines {
    /// The longest piece of a line passed on at once: 16 KiB.
    static let maximumLine = 16 * 1024

    private var pending: [UInt8] = []

    var isEmpty: Bool { pending.isEmpty }

    /// Appends `bytes` and hands every complete line (without its newline)
    /// and every full `maximumLine` piece of a longer one to `line`.
    mutating func feed(_ bytes: some Collection<UInt8>, _ line: (ArraySlice<UInt8>) -> Void) {
        pending.append(contentsOf: bytes)
        var start = pending.startIndex
        while start < pending.endIndex {
            let window = pending[start..<min(start + Self.maximumLine, pending.endIndex)]
            if let newline = window.firstIndex(of: UInt8(ascii: "\n")) {
                line(pending[start..<newline])
                start = newline + 1
            } else if window.count == Self.maximumLine {
                line(window)
                start = window.endIndex
            } else {
                break
            }
        }
        pending.removeSubrange(..<start)
    }

    /// At end of file: the last line, if it had no newline.
    mutating func finish(_ line: (ArraySlice<UInt8>) -> Void) {
        if !pending.isEmpty { line(pending[...]) }
        pending.removeAll()
    }
}
