/// A parser of a stream protocol (RESP, PostgreSQL's), fed whatever bytes
/// have arrived and reading whole messages from `start`: the one place the
/// consumed front of the buffer is let go.
protocol IncrementalParser {
    var buffer: [UInt8] { get set }
    var start: Int { get set }
}

extension IncrementalParser {
    /// Appends `bytes`; what was consumed is dropped once it is most of the buffer.
    mutating func feed(_ bytes: some Sequence<UInt8>) {
        if start > 4096 && start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }
}
