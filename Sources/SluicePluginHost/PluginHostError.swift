import SluiceSystem

/// Why the plugin host could not answer. Every case names the interface,
/// plugin, hook or path involved.
public enum PluginHostError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Reload refused: pipelines hold leases on these plugins (name → count).
    case busy(leases: [String: Int])
    /// No loaded plugin scored above 0 for the interface and none was forced.
    case noMatchingPlugin(interface: String, driver: String, directory: String)
    /// Config forces a plugin that is not loaded; `detail` says why.
    case forcedPluginUnavailable(name: String, interface: String, detail: String)
    /// The facts or arguments cannot be handed to a plugin.
    case invalidFacts(String)
    /// The plugin's hook refused (non-zero return) with its own message.
    case hookRefused(plugin: String, hook: String, message: String)
    /// The plugin's hook returned something the host cannot use.
    case invalidResult(plugin: String, hook: String, message: String)
    /// The lease was released; acquire a new one.
    case leaseReleased(plugin: String)
    /// `/sys/class/net/IF/queues` could not be read.
    case sysfsUnreadable(interface: String, path: String, error: SystemCallError)

    public var description: String {
        switch self {
        case .busy(let leases):
            let users = leases.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            return "plugins are in use by running pipelines (\(users.joined(separator: ", "))); stop them before reloading"
        case .noMatchingPlugin(let interface, let driver, let directory):
            return "no plugin matches driver '\(driver)' on \(interface); is the generic plugin installed in \(directory)?"
        case .forcedPluginUnavailable(let name, let interface, let detail):
            return "plugin '\(name)' forced for \(interface) is not available: \(detail)"
        case .invalidFacts(let message):
            return "invalid facts: \(message)"
        case .hookRefused(let plugin, let hook, let message):
            return "plugin '\(plugin)' \(hook): \(message.isEmpty ? "refused without a message" : message)"
        case .invalidResult(let plugin, let hook, let message):
            return "plugin '\(plugin)' \(hook) returned an unusable result: \(message)"
        case .leaseReleased(let plugin):
            return "the lease on plugin '\(plugin)' was already released"
        case .sysfsUnreadable(let interface, let path, let error):
            return "cannot read the queues of \(interface) at \(path): \(error.errno.description)"
        }
    }

    /// The control protocol v1 error code that fits this error.
    public var controlErrorCode: String {
        switch self {
        case .busy: "busy"
        case .noMatchingPlugin, .forcedPluginUnavailable, .sysfsUnreadable: "not_found"
        case .invalidFacts, .hookRefused: "invalid_argument"
        case .invalidResult, .leaseReleased: "internal"
        }
    }
}
