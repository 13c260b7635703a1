#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Value parsers for option values: each returns the value or throws an
/// error that names the option, the value and what was expected.
enum Parse {
    static func count(_ text: String, source: SettingSource) throws(BellwetherError) -> Int {
        let expected = "a whole number from 1 to \(Plan.maximumWorkers)"
        guard let value = Int(text), (1...Plan.maximumWorkers).contains(value) else {
            throw .invalidValue(source, value: text, expected: expected)
        }
        return value
    }

    /// The longest age limit: 30 days.
    static let longestAge: Double = 2_592_000

    static func seconds(_ text: String, source: SettingSource, minimum: Double = 0,
                        maximum: Double = 86_400) throws(BellwetherError) -> Duration {
        let most = String(Int(maximum))
        let expected = minimum > 0 ? "a number of seconds above 0, up to \(most)"
            : "a number of seconds from 0 to \(most)"
        guard text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(text), value.isFinite, (minimum...maximum).contains(value) else {
            throw .invalidValue(source, value: text, expected: expected)
        }
        return .nanoseconds(Int64(value * 1e9))
    }

    /// A size in bytes: a whole number with an optional binary unit, K, M,
    /// G or T (also KiB, MB, …: always powers of 1024); 0 means off, and
    /// anything else under 1 MiB is a mistake no process tree fits in.
    static func size(_ text: String, source: SettingSource) throws(BellwetherError) -> Int {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        var unit = text.dropFirst(digits.count).uppercased()
        if unit.hasSuffix("IB") { unit.removeLast(2) } else if unit.count > 1, unit.hasSuffix("B") { unit.removeLast() }
        let shifts: [String: Int] = ["": 0, "B": 0, "K": 10, "M": 20, "G": 30, "T": 40]
        guard !digits.isEmpty, let number = Int(digits), let shift = shifts[unit],
              number <= (1 << 50) >> shift, number == 0 || number << shift >= 1 << 20 else {
            throw .invalidValue(source, value: text,
                                expected: "0, or a size of at least 1M such as 512M or 2G (K, M, G, T: powers of 1024)")
        }
        return number << shift
    }

    static func boolean(_ text: String, source: SettingSource) throws(BellwetherError) -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw .invalidValue(source, value: text, expected: "true or false")
        }
    }

    static func nonEmpty(_ text: String, source: SettingSource, expected: String) throws(BellwetherError) -> String {
        guard !text.isEmpty else { throw .invalidValue(source, value: text, expected: expected) }
        return text
    }

    static func octalMode(_ text: String, source: SettingSource, example: String) throws(BellwetherError) -> Int {
        guard text.allSatisfy({ ("0"..."7").contains($0) }), let mode = Int(text, radix: 8), (0...0o777).contains(mode)
        else { throw .invalidValue(source, value: text, expected: "an octal file mode such as \(example)") }
        return mode
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || (first.isASCII && first.properties.isAlphabetic)
        else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic)
            || ("0"..."9").contains($0) }
    }

    static func variableName(_ text: String, source: SettingSource) throws(BellwetherError) -> String {
        guard isVariableName(text) else {
            throw .invalidValue(source, value: text, expected: "a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        }
        return text
    }

    static func envEntry(_ text: String, source: SettingSource) throws(BellwetherError) -> EnvEntry {
        guard let equals = text.firstIndex(of: "="), isVariableName(String(text[..<equals])) else {
            throw .invalidValue(source, value: text, expected: "KEY=VALUE with KEY a variable name")
        }
        return EnvEntry(key: String(text[..<equals]), value: String(text[text.index(after: equals)...]),
                        source: source)
    }

}
