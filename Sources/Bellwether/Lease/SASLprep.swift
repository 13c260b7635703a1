/// The part of SASLprep (RFC 4013) that a SCRAM client needs to agree with
/// the verifier PostgreSQL stored, following what PostgreSQL's own
/// `pg_saslprep` does with a password:
///
/// - pure ASCII (every byte below 0x80, control characters included) is used
///   unchanged;
/// - bytes that are not UTF-8 are used unchanged (PostgreSQL falls back to
///   the raw password whenever preparation fails);
/// - otherwise non-ASCII spaces (RFC 3454 table C.1.2) become U+0020 and the
///   "commonly mapped to nothing" characters (table B.1) are dropped — spaces
///   first, as PostgreSQL does, so U+200B, listed in both, becomes a space; a
///   password that maps to nothing at all is used unchanged.
///
/// Not done: NFKC normalisation, the prohibited-output and bidirectional
/// checks, and the unassigned-code-point table, which together need Unicode
/// tables far larger than this client. A non-ASCII password is prepared as
/// PostgreSQL prepares it when, after mapping, it is already in NFKC and —
/// if mapping changed it — has no prohibited, unassigned or misplaced
/// right-to-left character. Otherwise the proof differs from what the server
/// expects and login fails as a wrong password would. Passwords typed on
/// ordinary keyboards (composed accents, no full-width or compatibility
/// forms) are in NFKC.
enum SASLprep {
    static func prepare(_ password: [UInt8]) -> [UInt8] {
        if password.allSatisfy({ $0 < 0x80 }) { return password }
        guard let text = String(validating: password, as: UTF8.self) else { return password }
        var mapped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if isNonASCIISpace(scalar.value) {
                mapped.append(" ")
            } else if !isMappedToNothing(scalar.value) {
                mapped.append(scalar)
            }
        }
        if mapped.isEmpty { return password }
        return Array(String(mapped).utf8)
    }

    /// RFC 3454 table C.1.2.
    static func isNonASCIISpace(_ value: UInt32) -> Bool {
        switch value {
        case 0x00A0, 0x1680, 0x2000...0x200B, 0x202F, 0x205F, 0x3000: true
        default: false
        }
    }

    /// RFC 3454 table B.1.
    static func isMappedToNothing(_ value: UInt32) -> Bool {
        switch value {
        case 0x00AD, 0x034F, 0x1806, 0x180B...0x180D, 0x200B...0x200D, 0x2060, 0xFE00...0xFE0F, 0xFEFF: true
        default: false
        }
    }
}
