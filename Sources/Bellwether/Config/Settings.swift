public enum LogFormat: String, Hashable, Sendable { case text, json }

/// Settings as given, before validation against the system: the merge of
/// flags, environment, config file and defaults (highest first).
public struct Settings: Hashable, Sendable {
    /// nil: the number of online CPUs.
    public var workers: Int?
    public var roleEnv = "WORKER_ROLE"
    public var scheduler = true
    public var gracefulTimeout: Duration = .seconds(30)
    /// `--env` entries in the order given; a later entry for a key wins.
    public var env: [EnvEntry] = []
    public var chdir: String?
    public var pidfile: String?
    public var timezone: String?
    public var config: String?
    public var checkConfig = false
    public var logFormat = LogFormat.text
    public var lease: String?
    public var command: [String] = []

    /// Sources of the settings validated later, for error messages.
    var sources: [String: SettingSource] = [:]

    public init() {}

    func source(_ option: String) -> SettingSource { sources[option] ?? .flag("--\(option)") }
}

public struct EnvEntry: Hashable, Sendable {
    public var key: String
    public var value: String
    public var source: SettingSource
}
