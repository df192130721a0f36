extension Methods {
    public enum PluginsList: ControlMethod {
        public typealias Response = PluginListing
        public static let name = "plugins.list"
        public static let level = AccessLevel.read
        public static let summary = "Plugin files: loaded, or rejected with the reason"
    }

    public enum PluginsReload: ControlMethod {
        public typealias Response = PluginListing
        public static let name = "plugins.reload"
        public static let level = AccessLevel.admin
        public static let summary = "Rescan the plugin directory; busy while a pipeline uses a plugin"
    }
}

/// The plugin directory and every file in it.
public struct PluginListing: Codable, Sendable, Equatable {
    public var directory: String
    public var plugins: [PluginRecord]

    public init(directory: String, plugins: [PluginRecord]) {
        self.directory = directory; self.plugins = plugins
    }

    enum CodingKeys: String, CodingKey { case directory, plugins }
}

/// A loaded plugin, as listings and explanations show it.
public struct PluginInfo: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var description: String
    public var path: String
    /// Hooks the plugin implements (the others mean "nothing special").
    public var hooks: [String]

    public init(name: String, version: String, description: String, path: String, hooks: [String]) {
        self.name = name; self.version = version; self.description = description; self.path = path
        self.hooks = hooks
    }

    enum CodingKeys: String, CodingKey { case name, version, description, path, hooks }
}

/// One file in the plugin directory: loaded, or rejected with the reason.
public struct PluginRecord: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case loaded, rejected }
    public var path: String
    public var status: Status
    /// Set when loaded.
    public var plugin: PluginInfo?
    /// Set when rejected: the exact reason, naming the file or directory.
    public var reason: String?
    /// Pipelines currently holding a lease on this plugin.
    public var leases: Int

    public init(path: String, status: Status, plugin: PluginInfo?, reason: String?, leases: Int) {
        self.path = path; self.status = status; self.plugin = plugin; self.reason = reason; self.leases = leases
    }

    enum CodingKeys: String, CodingKey { case path, status, plugin, reason, leases }
}
