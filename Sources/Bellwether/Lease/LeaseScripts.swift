/// The Lua scripts behind each `LeaseCommand`, and the decoding of their
/// replies. Each runs atomically in Redis, so every compare-and-act is one step.
///
/// The key holds `holder|fence` with an expiry, or the tombstone `released`
/// (no expiry) after a clean release. `KEY:fence` is the fence counter.
enum LeaseScripts {
    static let tombstone = "released"

    /// KEYS: key, fence key. ARGV: holder, ttl ms, floor.
    /// Returns {1, fence, clean} or {0, current value}.
    static let acquire = """
        local current = redis.call('GET', KEYS[1])
        if current and current ~= 'released' then return {0, current} end
        local fence = redis.call('INCR', KEYS[2])
        local floor = tonumber(ARGV[3])
        if fence < floor then
          fence = floor
          redis.call('SET', KEYS[2], fence)
        end
        redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
        if current then return {1, fence, 1} end
        return {1, fence, 0}
        """

    /// KEYS: key. ARGV: value, ttl ms. Returns {1} or {0, current value}.
    static let renew = """
        local current = redis.call('GET', KEYS[1])
        if current == ARGV[1] then
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return {1}
        end
        return {0, current}
        """

    /// KEYS: key. ARGV: value. Returns {1} or {0, current value}.
    static let release = """
        local current = redis.call('GET', KEYS[1])
        if current == ARGV[1] then
          redis.call('SET', KEYS[1], 'released')
          return {1}
        end
        return {0, current}
        """

    /// The EVAL arguments for `command`.
    static func request(_ command: LeaseCommand, key: String, holder: String, ttl: Duration) -> [String] {
        let milliseconds = String(max(1, ttl.nanoseconds / 1_000_000))
        switch command {
        case .acquire(let floor):
            return ["EVAL", acquire, "2", key, key + ":fence", holder, milliseconds, String(floor)]
        case .renew(let value):
            return ["EVAL", renew, "1", key, value, milliseconds]
        case .release(let value):
            return ["EVAL", release, "1", key, value]
        }
    }

    /// The reply to `command`, or a description of what was wrong with it.
    static func decode(_ value: RESPValue, for command: LeaseCommand) -> Result<LeaseReply, RESPError> {
        if case .error(let message) = value { return .failure(RESPError(description: "redis: \(message)")) }
        guard case .array(let elements?) = value, case .integer(let status)? = elements.first else {
            return .failure(RESPError(description: "unexpected reply from the lease script"))
        }
        let current: String? = elements.count > 1 ? text(elements[1]) : nil
        switch (command, status) {
        case (.acquire, 1):
            guard elements.count == 3, case .integer(let fence) = elements[1], case .integer(let clean) = elements[2]
            else { break }
            return .success(.acquired(fence: fence, clean: clean == 1))
        case (.acquire, 0):
            guard let current else { break }
            return .success(.heldBy(current))
        case (.renew, 1): return .success(.renewed)
        case (.release, 1): return .success(.released)
        case (.renew, 0), (.release, 0): return .success(.notOurs(current))
        default: break
        }
        return .failure(RESPError(description: "unexpected reply from the lease script"))
    }

    private static func text(_ value: RESPValue) -> String? {
        if case .bulk(let bytes?) = value { return String(decoding: bytes, as: UTF8.self) }
        return nil
    }
}
