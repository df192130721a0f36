import CSluiceDriverABI
import SluiceProtocol
import SluiceSystem
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A plugin file the host accepted: its dlopen handle and a private copy of
/// the v1 part of its `struct sluice_driver_plugin`. The code stays mapped for
/// as long as this object lives (a lease keeps it alive), and the hooks are
/// called only through the wrappers below, which validate what comes back.
// Unchecked: the handle and the copied table are immutable once loaded; the
// hooks are pure functions of the facts they are given.
final class LoadedPlugin: @unchecked Sendable {
    let info: PluginInfo
    private let handle: UnsafeMutableRawPointer
    private let table: sluice_driver_plugin

    var name: String { info.name }

    private init(info: PluginInfo, handle: UnsafeMutableRawPointer, table: sluice_driver_plugin) {
        self.info = info
        self.handle = handle
        self.table = table
    }

    deinit {
        dlclose(handle)
        LiveObjects.unregister(path: info.path)
    }

    // MARK: Loading

    /// The end of the last v1 field: the smallest `sz` a v1 plugin may declare.
    /// Fixed forever, however the header grows.
    static let v1Size: Int =
        MemoryLayout<sluice_driver_plugin>.offset(of: \sluice_driver_plugin.check_channels_change)!
        + MemoryLayout<UnsafeRawPointer?>.size

    /// The largest `sz` the host reads. Far beyond any real plugin struct.
    static let maxPluginStructSize = 4096

    static let entrySymbol = SLUICE_DRIVER_PLUGIN_ENTRY
    static let hostABIVersion = UInt32(SLUICE_DRIVER_ABI_VERSION)

    /// Checks and loads one plugin file, or says exactly why not. The checks
    /// run on an open descriptor, and the file dlopen maps must still be that
    /// file afterwards.
    static func load(path: String, runningAsRoot: Bool) -> Result<LoadedPlugin, PluginRejection> {
        let linkStatus: stat
        do {
            linkStatus = try FileStatus.lstatus(path)
        } catch {
            return .failure(PluginRejection("cannot inspect the file: \(error.errno.description)"))
        }
        if linkStatus.isSymbolicLink {
            return .failure(PluginRejection("is a symbolic link; install the plugin file itself"))
        }
        // O_NONBLOCK: should the file be swapped for a FIFO, open must not hang.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(PluginRejection("cannot open the file: \(currentErrno.description)"))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            return .failure(PluginRejection("cannot inspect the file: \(currentErrno.description)"))
        }
        guard status.isRegularFile else { return .failure(PluginRejection("is not a regular file")) }
        if status.isWorldWritable {
            return .failure(PluginRejection(
                "file \(path) is world-writable (mode \(String(status.st_mode & 0o7777, radix: 8)))"))
        }
        if runningAsRoot && status.st_uid != 0 {
            return .failure(PluginRejection("file \(path) is owned by uid \(status.st_uid), not root"))
        }
        let file = FileIdentity(status)
        return LiveObjects.whileLocked { (live: inout [String: LiveObjects.Entry]) -> Result<LoadedPlugin, PluginRejection> in
            // glibc hands back an object already loaded under the same path
            // even when the file has since been replaced: refuse rather than
            // run the old code under the new file's name.
            if let loaded = live[path], loaded.file != file {
                return .failure(PluginRejection(
                    "an older copy of this file is still loaded by a pipeline; reload again after it stops"))
            }
            _ = dlerror()
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                let detail = dlerror().map { String(cString: $0) } ?? "unknown error"
                return .failure(PluginRejection("dlopen failed: \(detail)"))
            }
            guard let after = try? FileStatus.status(of: path), FileIdentity(after) == file else {
                dlclose(handle)
                return .failure(PluginRejection("the file changed while it was being loaded"))
            }
            switch validate(handle: handle, path: path) {
            case .success(let plugin):
                live[path, default: LiveObjects.Entry(file: file, count: 0)].count += 1
                return .success(plugin)
            case .failure(let rejection):
                dlclose(handle)
                return .failure(rejection)
            }
        }
    }

    private static func validate(
        handle: UnsafeMutableRawPointer, path: String
    ) -> Result<LoadedPlugin, PluginRejection> {
        guard let symbol = dlsym(handle, entrySymbol) else {
            return .failure(PluginRejection("no symbol \(entrySymbol)"))
        }
        typealias Entry = @convention(c) () -> UnsafeRawPointer?
        let entry = unsafeBitCast(symbol, to: Entry.self)
        guard let raw = entry() else {
            return .failure(PluginRejection("\(entrySymbol)() returned NULL"))
        }
        let declaredSize = raw.loadUnaligned(as: UInt.self)  // size_t sz
        guard declaredSize >= UInt(v1Size) else {
            return .failure(PluginRejection(
                "struct size \(declaredSize) is smaller than the v1 size \(v1Size)"))
        }
        // Past this the number is garbage, and reading that far could fault.
        guard declaredSize <= UInt(maxPluginStructSize) else {
            return .failure(PluginRejection(
                "struct size \(declaredSize) is implausible (more than \(maxPluginStructSize) bytes); set sz = sizeof(struct sluice_driver_plugin)"))
        }
        // libbpf's rule for opts: a larger struct is fine as long as this
        // host would ignore nothing, i.e. every byte it does not know is zero.
        let hostSize = ABISize.plugin
        if declaredSize > UInt(hostSize) {
            let unknown = UnsafeRawBufferPointer(start: raw + hostSize, count: Int(declaredSize) - hostSize)
            if let index = unknown.firstIndex(where: { $0 != 0 }) {
                return .failure(PluginRejection(
                    "struct size \(declaredSize) is larger than this host's \(hostSize) and byte \(hostSize + index) is not zero: the plugin sets fields of a newer plugin ABI that this Sluice would ignore; upgrade Sluice or rebuild the plugin against this host's sluice/driver_plugin.h"))
            }
        }
        // Copy only what both sides know: an older plugin's struct may be smaller.
        var table = sluice_driver_plugin()
        withUnsafeMutableBytes(of: &table) { dest in
            let count = min(Int(declaredSize), hostSize, dest.count)
            dest.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: count))
        }
        guard table.abi_version == hostABIVersion else {
            return .failure(PluginRejection(
                "abi_version \(table.abi_version) is not supported (host speaks \(hostABIVersion))"))
        }
        guard let namePointer = table.name else { return .failure(PluginRejection("name is NULL")) }
        let name = boundedString(namePointer, limit: Int(SLUICE_PLUGIN_NAME_MAX) + 1)
        if let problem = nameProblem(name) { return .failure(PluginRejection(problem)) }

        var hooks: [String] = []
        if table.match != nil { hooks.append("match") }
        if table.map_channel != nil { hooks.append("map_channel") }
        if table.prepare != nil { hooks.append("prepare") }
        if table.check_channels_change != nil { hooks.append("check_channels_change") }
        let info = PluginInfo(
            name: name,
            version: table.version.map { boundedString($0, limit: 64) } ?? "",
            description: table.description.map { boundedString($0, limit: 256) } ?? "",
            path: path, hooks: hooks)
        return .success(LoadedPlugin(info: info, handle: handle, table: table))
    }

    private static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "name is empty" }
        if name.utf8.count > Int(SLUICE_PLUGIN_NAME_MAX) {
            return "name '\(name)...' is longer than \(SLUICE_PLUGIN_NAME_MAX) bytes"
        }
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
        }
        return allowed ? nil : "name '\(name)' may contain only letters, digits, '_', '-' and '.'"
    }

    // MARK: Hooks

    func match(_ facts: UnsafePointer<sluice_driver_facts>) -> PluginScore {
        guard let hook = table.match else {
            return PluginScore(plugin: name, score: 0, reason: "\(name) has no match hook and is used only when forced")
        }
        let (score, message) = withMessageBuffer { hook(facts, $0, $1) }
        return PluginScore(plugin: name, score: max(score, 0), reason: message)
    }

    func mapChannel(
        _ channel: UInt32, facts: DriverFacts, abiFacts: UnsafePointer<sluice_driver_facts>
    ) throws(PluginHostError) -> QueueMapping {
        let (result, message, map) = withZeroedABIStruct(sluice_queue_map.self, size: ABISize.queueMap) { map in
            map.pointee.bind_queue = channel
            map.pointee.steer_queue = channel
            map.pointee.xskmap_key = channel
            guard let hook = table.map_channel else { return (Int32(0), "", map.pointee) }
            let (result, message) = withMessageBuffer { hook(abiFacts, channel, map, $0, $1) }
            return (result, message, map.pointee)
        }
        guard result == 0 else { throw .hookRefused(plugin: name, hook: "map_channel", message: message) }
        let mapping = QueueMapping(
            channel: channel, bindQueue: map.bind_queue, steerQueue: map.steer_queue,
            xskmapKey: map.xskmap_key, message: message)
        // A queue id the netdev does not have would bind nothing and steer nowhere.
        let limit = facts.sysfsRxQueues
        if limit > 0 {
            let ids = [("bind queue", mapping.bindQueue), ("steer queue", mapping.steerQueue),
                       ("XSKMAP key", mapping.xskmapKey)]
            if let (what, id) = ids.first(where: { $0.1 >= limit }) {
                throw .invalidResult(
                    plugin: name, hook: "map_channel",
                    message: "channel \(channel) maps to \(what) \(id), but \(facts.interface) has only \(limit) rx queues")
            }
        }
        return mapping
    }

    func prepare(
        _ abiFacts: UnsafePointer<sluice_driver_facts>, facts: DriverFacts
    ) throws(PluginHostError) -> Preparation {
        guard let hook = table.prepare else { return .none }
        let (result, message, requirements) = withZeroedABIStruct(
            sluice_requirements.self, size: ABISize.requirements
        ) { requirements in
            let (result, message) = withMessageBuffer { hook(abiFacts, requirements, $0, $1) }
            return (result, message, requirements.pointee)
        }
        guard result == 0 else { throw .hookRefused(plugin: name, hook: "prepare", message: message) }
        // An XSKMAP is kernel memory sized by this number: keep it plausible.
        guard requirements.min_xskmap_entries <= Self.maxXskmapEntries else {
            throw .invalidResult(
                plugin: name, hook: "prepare",
                message: "min_xskmap_entries \(requirements.min_xskmap_entries) exceeds \(Self.maxXskmapEntries)")
        }
        // The plugin may say the device has fewer channels than reported, never more.
        let reported = facts.channels.receiveChannels
        let ceiling = reported > 0 ? reported : (facts.sysfsRxQueues > 0 ? facts.sysfsRxQueues : DriverFacts.maxQueueCount)
        guard requirements.rx_channels <= ceiling else {
            throw .invalidResult(
                plugin: name, hook: "prepare",
                message: "rx_channels \(requirements.rx_channels) exceeds the \(ceiling) receive channels \(facts.interface) reports")
        }
        return Preparation(requirements, message: message)
    }

    static let maxXskmapEntries: UInt32 = 65_536

    func checkChannelsChange(
        _ facts: UnsafePointer<sluice_driver_facts>, proposed: ChannelCounts
    ) -> ChannelChangeVerdict {
        guard let hook = table.check_channels_change else {
            return ChannelChangeVerdict(allowed: true, message: "")
        }
        let (result, message) = withZeroedABIStruct(
            sluice_channel_counts.self, size: ABISize.channelCounts
        ) { counts in
            counts.pointee.rx = proposed.rx
            counts.pointee.tx = proposed.tx
            counts.pointee.combined = proposed.combined
            return withMessageBuffer { hook(facts, counts, $0, $1) }
        }
        return ChannelChangeVerdict(allowed: result == 0, message: message)
    }
}

/// Which file a path named when it was checked: a replaced file differs.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modified: timespec

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modified = status.st_mtim
    }

    static func == (lhs: FileIdentity, rhs: FileIdentity) -> Bool {
        lhs.device == rhs.device && lhs.inode == rhs.inode && lhs.size == rhs.size
            && lhs.modified.tv_sec == rhs.modified.tv_sec && lhs.modified.tv_nsec == rhs.modified.tv_nsec
    }
}

/// Plugin files this process has dlopen()ed and not yet closed, by path,
/// across all hosts (dlopen's own table is process-wide too).
enum LiveObjects {
    struct Entry {
        var file: FileIdentity
        var count: Int
    }

    private static let table = Mutex<[String: Entry]>([:])

    /// Runs `body` with the table locked, so that a check and the dlopen
    /// that follows it cannot interleave with another load.
    static func whileLocked<R>(_ body: (inout [String: Entry]) -> R) -> R {
        table.withLock { body(&$0) }
    }

    fileprivate static func unregister(path: String) {
        table.withLock { table in
            guard var entry = table[path] else { return }
            entry.count -= 1
            table[path] = entry.count > 0 ? entry : nil
        }
    }
}

/// Why a plugin file was not loaded.
struct PluginRejection: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Capacity of the message buffer every hook may write into.
private let messageCapacity = 512

/// Calls `body` with an empty message buffer and returns its result and the
/// message, NUL-terminated by force so a careless plugin cannot overrun it.
private func withMessageBuffer<R>(_ body: (UnsafeMutablePointer<CChar>, Int) -> R) -> (R, String) {
    var buffer = [CChar](repeating: 0, count: messageCapacity)
    let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    buffer[messageCapacity - 1] = 0
    let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    return (result, String(decoding: bytes, as: UTF8.self))
}

/// A C string from plugin memory, reading at most `limit` bytes.
private func boundedString(_ pointer: UnsafePointer<CChar>, limit: Int) -> String {
    let length = strnlen(pointer, limit)
    return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }
}
