import CSluiceDriverABI
import Logging
import SluiceProtocol
import SluiceSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Loads the driver-quirk plugins from one directory, picks the plugin for an
/// interface and asks it for queue ids. This is the only place queue ids are
/// computed: data path sockets, XSKMAP keys and steering rules all take them
/// from ``explain(_:channels:forced:)`` or from a ``PluginLease``.
///
/// Control-plane only: a lock guards the registry, and hooks are cheap pure
/// functions, so callers may use it from any thread.
public final class PluginHost: Sendable {
    public let directory: String
    private let logger: Logger
    private let state: Mutex<Registry>

    /// At most this many plugin files are looked at; the rest are rejected.
    public static let maxPluginFiles = 128
    /// At most this many channels per explain or map request.
    public static let maxChannelsPerRequest = 1024

    private struct Registry {
        var records: [PluginRecord] = []
        /// Accepted plugins, sorted by name (the tie-break order).
        var plugins: [LoadedPlugin] = []
        /// Leases held per plugin name.
        var leases: [String: Int] = [:]
    }

    /// Scans `directory` now. Problems (a missing directory, rejected files)
    /// end up in ``list()`` and the log; they never stop the host.
    public init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
        let scan = Self.scan(directory: directory, logger: logger)
        self.state = Mutex(Registry(records: scan.records, plugins: scan.plugins))
    }

    /// Every `*.so` file seen by the last scan: loaded, or rejected and why.
    public func list() -> [PluginRecord] {
        state.withLock { registry in
            registry.records.map { record in
                var record = record
                if let name = record.plugin?.name { record.leases = registry.leases[name, default: 0] }
                return record
            }
        }
    }

    /// Rescans the directory, unloading the old plugins, unless a pipeline
    /// holds a lease: then nothing changes and this throws `busy`, because
    /// unloading would pull code out from under it.
    @discardableResult
    public func reload() throws(PluginHostError) -> [PluginRecord] {
        try state.withLock { (registry: inout Registry) throws(PluginHostError) in
            let held = registry.leases.filter { $0.value > 0 }
            guard held.isEmpty else { throw .busy(leases: held) }
            // Close the old objects first: dlopen would otherwise hand back
            // an old object for a path whose file has been replaced.
            registry.plugins = []
            let scan = Self.scan(directory: directory, logger: logger)
            registry.records = scan.records
            registry.plugins = scan.plugins
        }
        logger.info("plugins reloaded", metadata: ["directory": "\(directory)"])
        return list()
    }

    /// Which plugin handles `facts` and why: every plugin's score, the highest
    /// wins (ties by name); `forced` (from config) names the plugin to use
    /// whatever its score.
    public func select(_ facts: DriverFacts, forced: String? = nil) throws(PluginHostError) -> PluginSelection {
        try state.withLock { (registry: inout Registry) throws(PluginHostError) in
            try choose(facts, forced: forced, among: registry).1
        }
    }

    /// `plugins.explain`: the chosen plugin, the scores, the facts, the mapping
    /// of each channel in `channels` (when nil, every receive channel the
    /// interface has, as `prepare` counts them) and what `prepare` requires.
    public func explain(
        _ facts: DriverFacts, channels: [UInt32]? = nil, forced: String? = nil
    ) throws(PluginHostError) -> PluginExplanation {
        if let channels { try Self.checkChannelCount(channels.count) }
        return try state.withLock { (registry: inout Registry) throws(PluginHostError) in
            let (plugin, selection) = try choose(facts, forced: forced, among: registry)
            return try facts.withABIFacts { (abiFacts) throws(PluginHostError) in
                // prepare first: it may know better than the facts how many channels there are.
                let preparation = try plugin.prepare(abiFacts, facts: facts)
                let requested = channels ?? Array(preparation.defaultChannels(for: facts).prefix(Self.maxChannelsPerRequest))
                let mappings = try requested.map { (channel) throws(PluginHostError) in
                    try plugin.mapChannel(channel, facts: facts, abiFacts: abiFacts)
                }
                return PluginExplanation(
                    facts: facts, selection: selection, mappings: mappings, preparation: preparation)
            }
        }
    }

    /// Asks the plugin for `facts` whether the channel counts may change to
    /// `proposed` (for `channels.set` on an interface no pipeline leases; a
    /// running pipeline asks through its ``PluginLease``).
    public func checkChannelsChange(
        _ facts: DriverFacts, proposed: ChannelCounts, forced: String? = nil
    ) throws(PluginHostError) -> ChannelChangeVerdict {
        try state.withLock { (registry: inout Registry) throws(PluginHostError) in
            let (plugin, _) = try choose(facts, forced: forced, among: registry)
            return facts.withABIFacts { plugin.checkChannelsChange($0, proposed: proposed) }
        }
    }

    /// Selects the plugin for `facts` and leases it: while any lease is held,
    /// ``reload()`` answers busy. A pipeline holds one for its lifetime and
    /// computes every queue id through it.
    public func acquire(_ facts: DriverFacts, forced: String? = nil) throws(PluginHostError) -> PluginLease {
        try state.withLock { (registry: inout Registry) throws(PluginHostError) in
            let (plugin, selection) = try choose(facts, forced: forced, among: registry)
            registry.leases[plugin.name, default: 0] += 1
            return PluginLease(host: self, plugin: plugin, selection: selection)
        }
    }

    func release(_ plugin: LoadedPlugin) {
        state.withLock { registry in
            let remaining = registry.leases[plugin.name, default: 0] - 1
            registry.leases[plugin.name] = remaining > 0 ? remaining : nil
        }
    }

    // MARK: Selection

    private func choose(
        _ facts: DriverFacts, forced: String?, among registry: Registry
    ) throws(PluginHostError) -> (LoadedPlugin, PluginSelection) {
        if let problem = facts.problem { throw .invalidFacts(problem) }
        let plugins = registry.plugins
        let scores = facts.withABIFacts { abiFacts in plugins.map { $0.match(abiFacts) } }
        // Stable sort over name-sorted plugins: equal scores stay in name order.
        let ranked = zip(plugins, scores).enumerated()
            .sorted { ($0.element.1.score, -$0.offset) > ($1.element.1.score, -$1.offset) }
            .map(\.element)

        if let forced {
            guard let (plugin, score) = ranked.first(where: { $0.0.name == forced }) else {
                throw .forcedPluginUnavailable(
                    name: forced, interface: facts.interface,
                    detail: unavailableDetail(registry.records, loaded: plugins.map(\.name)))
            }
            let selection = PluginSelection(
                plugin: plugin.info, forced: true, scores: ranked.map(\.1),
                why: "config forces '\(plugin.name)' for \(facts.interface) (its score is \(score.score))")
            return (plugin, selection)
        }
        guard let (plugin, score) = ranked.first, score.score > 0 else {
            throw .noMatchingPlugin(interface: facts.interface, driver: facts.driver, directory: directory)
        }
        let runnerUp = ranked.dropFirst().first.map { " over '\($0.0.name)' (\($0.1.score))" } ?? ""
        let selection = PluginSelection(
            plugin: plugin.info, forced: false, scores: ranked.map(\.1),
            why: "'\(plugin.name)' has the highest score (\(score.score))\(runnerUp) for driver '\(facts.driver)'")
        return (plugin, selection)
    }

    private func unavailableDetail(_ records: [PluginRecord], loaded: [String]) -> String {
        let rejected = records.filter { $0.status == .rejected }.count
        var detail = "no loaded plugin has that name (loaded: \(loaded.isEmpty ? "none" : loaded.joined(separator: ", ")))"
        if rejected > 0 { detail += "; \(rejected) file(s) in \(directory) were rejected, see the plugin list" }
        return detail
    }

    static func checkChannelCount(_ count: Int) throws(PluginHostError) {
        guard count <= maxChannelsPerRequest else {
            throw .invalidFacts("\(count) channels requested; at most \(maxChannelsPerRequest) at once")
        }
    }

    // MARK: Scanning

    private static func scan(directory: String, logger: Logger) -> (records: [PluginRecord], plugins: [LoadedPlugin]) {
        func rejected(_ path: String, _ reason: String) -> PluginRecord {
            logger.warning("plugin rejected", metadata: ["path": "\(path)", "reason": "\(reason)"])
            return PluginRecord(path: path, status: .rejected, plugin: nil, reason: reason, leases: 0)
        }
        let directoryStatus: stat
        let names: [String]
        do {
            directoryStatus = try FileStatus.status(of: directory)
            names = try Directory.names(in: directory, limit: 65_536)
                .filter { $0.hasSuffix(".so") }.sorted()
        } catch {
            return ([rejected(directory, "cannot read plugin directory \(directory): \(error.errno.description)")], [])
        }
        let directoryProblem = directoryStatus.isWorldWritable ? "directory \(directory) is world-writable" : nil
        let runningAsRoot = geteuid() == 0

        var records: [PluginRecord] = []
        var plugins: [LoadedPlugin] = []
        var loadedFrom: [String: String] = [:]
        for (index, name) in names.enumerated() {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if let directoryProblem {
                records.append(rejected(path, directoryProblem))
                continue
            }
            guard index < maxPluginFiles else {
                records.append(rejected(path, "more than \(maxPluginFiles) plugin files in \(directory)"))
                continue
            }
            switch LoadedPlugin.load(path: path, runningAsRoot: runningAsRoot) {
            case .failure(let rejection):
                records.append(rejected(path, rejection.reason))
            case .success(let plugin):
                if let first = loadedFrom[plugin.name] {
                    // Dropping `plugin` dlcloses it; the first copy stays loaded.
                    records.append(rejected(path, "duplicate name '\(plugin.name)' (already loaded from \(first))"))
                    continue
                }
                loadedFrom[plugin.name] = path
                plugins.append(plugin)
                records.append(PluginRecord(path: path, status: .loaded, plugin: plugin.info, reason: nil, leases: 0))
                logger.info("plugin loaded", metadata: [
                    "path": "\(path)", "name": "\(plugin.name)", "version": "\(plugin.info.version)",
                ])
            }
        }
        return (records, plugins.sorted { $0.name < $1.name })
    }
}

/// A pipeline's hold on its plugin: keeps the code loaded, blocks reload, and
/// is how the pipeline computes queue ids. Release it when the pipeline stops
/// (dropping the last reference releases it too).
public final class PluginLease: Sendable {
    /// Why this plugin was chosen, as at acquisition.
    public let selection: PluginSelection
    public var plugin: PluginInfo { selection.plugin }
    private let host: PluginHost
    private let loaded: LoadedPlugin
    private let released = Mutex(false)

    init(host: PluginHost, plugin: LoadedPlugin, selection: PluginSelection) {
        self.host = host
        self.loaded = plugin
        self.selection = selection
    }

    deinit { release() }

    /// Gives the plugin back; later calls on this lease throw. Idempotent.
    public func release() {
        let first = released.withLock { released in
            defer { released = true }
            return !released
        }
        if first { host.release(loaded) }
    }

    /// Queue ids for each channel (validated against the sysfs queue count).
    public func mapChannels(_ channels: [UInt32], facts: DriverFacts) throws(PluginHostError) -> [QueueMapping] {
        try PluginHost.checkChannelCount(channels.count)
        return try withFacts(facts) { (abiFacts) throws(PluginHostError) in
            try channels.map { (channel) throws(PluginHostError) in
                try loaded.mapChannel(channel, facts: facts, abiFacts: abiFacts)
            }
        }
    }

    /// Queue ids for one channel.
    public func mapChannel(_ channel: UInt32, facts: DriverFacts) throws(PluginHostError) -> QueueMapping {
        try mapChannels([channel], facts: facts)[0]
    }

    /// What must hold before the pipeline starts.
    public func prepare(_ facts: DriverFacts) throws(PluginHostError) -> Preparation {
        try withFacts(facts) { (abiFacts) throws(PluginHostError) in try loaded.prepare(abiFacts, facts: facts) }
    }

    /// Whether the interface's channel counts may change to `proposed` now.
    public func checkChannelsChange(
        _ facts: DriverFacts, proposed: ChannelCounts
    ) throws(PluginHostError) -> ChannelChangeVerdict {
        try withFacts(facts) { abiFacts in loaded.checkChannelsChange(abiFacts, proposed: proposed) }
    }

    private func withFacts<R>(
        _ facts: DriverFacts, _ body: (UnsafePointer<sluice_driver_facts>) throws(PluginHostError) -> R
    ) throws(PluginHostError) -> R {
        if released.withLock({ $0 }) { throw .leaseReleased(plugin: loaded.name) }
        if let problem = facts.problem { throw .invalidFacts(problem) }
        return try facts.withABIFacts(body)
    }
}
