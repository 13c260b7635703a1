/// Base64 with the standard alphabet and padding (RFC 4648 §4), which SCRAM
/// uses for salts, proofs and signatures (RFC 5802 §7). Decoding is strict —
/// no whitespace, no missing padding, no stray bits after the last byte —
/// because the input comes from a server we are still deciding whether to trust.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// alphabet's inverse: 0...63, or 0xff for bytes outside it.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xff, count: 256)
        for (value, symbol) in alphabet.enumerated() { table[Int(symbol)] = UInt8(value) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let group = UInt32(bytes[index]) << 16
                | (remaining > 1 ? UInt32(bytes[index + 1]) << 8 : 0)
                | (remaining > 2 ? UInt32(bytes[index + 2]) : 0)
            text.append(alphabet[Int(group >> 18 & 63)])
            text.append(alphabet[Int(group >> 12 & 63)])
            text.append(remaining > 1 ? alphabet[Int(group >> 6 & 63)] : UInt8(ascii: "="))
            text.append(remaining > 2 ? alphabet[Int(group & 63)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The decoded bytes, or nil unless `text` is canonical base64.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let symbols = Array(text)
        guard symbols.count % 4 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(symbols.count / 4 * 3)
        var index = 0
        while index < symbols.count {
            let last = index + 4 == symbols.count
            let padding = last ? symbols[index...].reversed().prefix { $0 == UInt8(ascii: "=") }.count : 0
            guard padding <= 2 else { return nil }
            var group: UInt32 = 0
            for offset in 0..<(4 - padding) {
                let value = values[Int(symbols[index + offset])]
                guard value != 0xff else { return nil }
                group = group << 6 | UInt32(value)
            }
            group <<= 6 * UInt32(padding)
            // A padded group's unused low bits must be zero, or two texts would decode alike.
            if padding == 1 && group & 0xff != 0 { return nil }
            if padding == 2 && group & 0xffff != 0 { return nil }
            bytes.append(UInt8(group >> 16 & 0xff))
            if padding < 2 { bytes.append(UInt8(group >> 8 & 0xff)) }
            if padding < 1 { bytes.append(UInt8(group & 0xff)) }
            index += 4
        }
        return bytes
    }

    static func decode(_ text: String) -> [UInt8]? { decode(Array(text.utf8)) }
}
