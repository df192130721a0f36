#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SluiceProtocol
import SluiceSystem
import Synchronization

/// What `recoverAtStartup()` found and did.
public struct RecoveryReport: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Equatable, Sendable {
        /// No journal: the last run stopped cleanly (or never changed a NIC).
        case nothing
        /// A journal from this boot (a crash): restored.
        case restored
        /// A journal from an earlier boot: the NIC state it describes is gone.
        case discardedEarlierBoot = "discarded_earlier_boot"
        /// The journal could not be read; moved aside.
        case unreadable
    }

    public var kind: Kind
    public var journalBootID: String?
    public var restore: RestoreReport?
    public var discarded: [JournalEntry] = []
    public var message: String
}

extension FeatureOutcome {
    /// `now` is the feature as read back; nil when the device no longer lists it.
    init(interface: String, kernelName: String, requestedAs: String, requested: Bool, now: Feature?) {
        let asked = requestedAs == kernelName ? kernelName : "\(requestedAs) (\(kernelName))"
        let state = { (on: Bool) in on ? "on" : "off" }
        let active = now?.active ?? false
        let message: String
        if now == nil {
            message = "requested \(asked) \(state(requested)); \(interface) no longer has it"
        } else if active == requested {
            message = "requested \(asked) \(state(requested)); it is \(state(active))"
        } else if now?.changeable == false {
            message = "requested \(asked) \(state(requested)); it is fixed \(state(active)) on \(interface) ([fixed] in ethtool -k)"
        } else {
            message = "requested \(asked) \(state(requested)); the driver left it \(state(active))"
        }
        self.init(name: kernelName, requestedAs: requestedAs, requested: requested, active: active,
                  fixed: now.map { !$0.changeable } ?? false, message: message)
        if now == nil { applied = false }
    }
}

/// The NIC facade the daemon uses: reads pass through to ``Ethtool``; every
/// change is journaled (original value, durably, with the boot id) before it
/// is applied, and can be restored. Blocking and thread-safe: call it from
/// a thread pool.
public final class NICController: Sendable {
    public let ethtool: Ethtool
    public let journal: NICJournal
    private let logger: Logger
    private let bootID: String
    /// Held by every change across its ethtool calls, so changes take turns
    /// and the journal always describes what was applied.
    private let state: Mutex<State>

    private struct State {
        var document: JournalDocument?
        var monitor: NICMonitor?
        /// Values Sluice set that someone else changed since, per interface.
        var outside: [String: [String]] = [:]

        var entries: [JournalEntry] { document?.entries ?? [] }
    }

    public init(stateDirectory: String = "/var/lib/sluice", backend: BackendChoice = .auto,
                logger: Logger = Logger(label: "sluice.nic")) throws {
        ethtool = try Ethtool(backend: backend)
        let journal = NICJournal(stateDirectory: stateDirectory)
        self.journal = journal
        self.logger = logger
        bootID = KernelFiles.bootID() ?? "unknown"
        state = Mutex(State(document: try? journal.load()))
    }

    deinit { state.withLock { $0.monitor }?.stop() }

    /// The changes Sluice would restore, oldest first.
    public var journalEntries: [JournalEntry] {
        state.withLock { $0.document?.bootID == bootID ? $0.entries : [] }
    }

    // MARK: Reads

    public func interfaces() -> [InterfaceInfo] { NICDiscovery.interfaces(ethtool: ethtool) }
    public func interface(_ name: String) throws -> InterfaceInfo { try NICDiscovery.interface(name, ethtool: ethtool) }
    public func channels(_ name: String) throws -> Served<Channels> { try ethtool.channels(name) }

    /// Everything `nic.show` needs; parts the driver lacks are listed in
    /// `problems` instead of failing the whole answer.
    public func details(_ name: String) throws -> InterfaceDetails {
        let info = try interface(name)
        var problems: [String] = []
        func part<T>(_ read: () throws -> T) -> T? {
            do { return try read() } catch { problems.append("\(error)"); return nil }
        }
        let channels = part { try ethtool.channels(name) }
        let rings = part { try ethtool.rings(name) }
        let features = part { try ethtool.features(name) }
        return InterfaceDetails(
            interface: info, channels: channels, rings: rings, features: features, problems: problems,
            changes: journalEntries.filter { $0.interface == name }, outsideChanges: outsideChanges(name))
    }
    public func rings(_ name: String) throws -> Served<Rings> { try ethtool.rings(name) }
    public func features(_ name: String) throws -> Served<Features> { try ethtool.features(name) }
    public func privateFlags(_ name: String) throws -> Served<[PrivateFlag]> { try ethtool.privateFlags(name) }
    public func statistics(_ name: String) throws -> Served<DriverStatistics> { try ethtool.statistics(name) }
    public func rules(_ name: String) throws -> Served<[NtupleRule]> { try ethtool.rules(name) }
    public func rss(_ name: String) throws -> Served<RSSConfiguration> { try ethtool.rss(name) }
    public func flowHash(_ name: String, flowType: HashFlowType) throws -> Served<FlowHashFields> {
        try ethtool.flowHash(name, flowType: flowType)
    }

    // MARK: Changes

    /// `ethtool -L`. "rx 9 exceeds the maximum 2 for vapp" before anything is touched.
    public func setChannels(_ name: String, _ change: ChannelsChange) throws -> Served<Channels> {
        try state.withLock { state in
            guard !change.isEmpty else { throw NICError.invalidArgument("no channel count given for \(name)") }
            let current = try ethtool.channels(name).value
            try change.validate(against: current, interface: name)
            if !change.isVisible(in: current) {
                try journaled(name, [.channels(original: change.original(in: current), applied: change)], in: &state) {
                    try ethtool.setChannels(name, change)
                }
            }
            return try ethtool.channels(name)
        }
    }

    /// `ethtool -G`.
    public func setRings(_ name: String, _ change: RingsChange) throws -> Served<Rings> {
        try state.withLock { state in
            guard !change.isEmpty else { throw NICError.invalidArgument("no ring size given for \(name)") }
            let current = try ethtool.rings(name).value
            try change.validate(against: current, interface: name)
            if !change.isVisible(in: current) {
                try journaled(name, [.rings(original: change.original(in: current), applied: change)], in: &state) {
                    try ethtool.setRings(name, change)
                }
            }
            return try ethtool.rings(name)
        }
    }

    /// `ethtool -K`, with kernel names, ethtool display names or short
    /// names (`ntuple`, `gro`, `tso`...). A group name sets every member
    /// that can change (its fixed members are left out, as ethtool does).
    ///
    /// The features are read back afterwards, and the result says per
    /// feature what was requested and what is active now. Drivers refuse
    /// silently (the kernel ignores fixed bits, and a dependency such as
    /// TSO needing scatter-gather drops a feature without an error), so a
    /// request that is not fully in effect throws
    /// ``NICError/featuresNotApplied(_:)`` rather than returning: whatever did
    /// take effect stays applied and journaled, for restore.
    public func setFeatures(_ name: String, _ wanted: [String: Bool]) throws -> FeaturesSetResult {
        try state.withLock { state in
            guard !wanted.isEmpty else { throw NICError.invalidArgument("no feature given for \(name)") }
            let current = try ethtool.features(name).value
            let available = current.features.map(\.name)
            var kernelWanted: [String: Bool] = [:]
            var checks: [(kernelName: String, requestedAs: String, on: Bool)] = []
            for (requested, on) in wanted.sorted(by: { $0.key < $1.key }) {
                let members = try FeatureNames.resolve(requested, available: available, interface: name)
                let changeable = members.filter { current[$0]?.changeable == true }
                // All fixed: nothing to send; the outcome reports whether
                // the fixed state happens to be the one asked for.
                for member in changeable.isEmpty ? members : changeable {
                    checks.append((member, requested, on))
                }
                for member in changeable { kernelWanted[member] = on }
            }
            let changes: [JournaledChange] = kernelWanted.sorted { $0.key < $1.key }.compactMap { feature, on in
                guard let now = current[feature], now.requested != on || now.active != on else { return nil }
                return .feature(name: feature, original: now.requested, applied: on)
            }
            if !changes.isEmpty {
                try journaled(name, changes, in: &state) { try ethtool.setFeatures(name, kernelWanted) }
            }
            let after = try ethtool.features(name)
            let outcomes = checks.map { check in
                FeatureOutcome(interface: name, kernelName: check.kernelName, requestedAs: check.requestedAs,
                               requested: check.on, now: after.value[check.kernelName])
            }
            let result = FeaturesSetResult(interface: name, value: after.value, backend: after.backend, outcomes: outcomes)
            if !result.notApplied.isEmpty {
                logger.warning("\(NICError.featuresNotApplied(result))")
                throw NICError.featuresNotApplied(result)
            }
            return result
        }
    }

    /// `ethtool -N IF flow-type ...`: places the rule as ethtool would and
    /// journals its location. With `dryRun` nothing changes; the result still
    /// has the location (when the driver can tell) and the ethtool line.
    public func addRule(_ name: String, _ rule: NtupleRule, dryRun: Bool = false) throws -> SteeringResult {
        try state.withLock { state in
            try rule.validate()
            var location: UInt32?
            do {
                let table = try ethtool.ruleTable(name)
                location = try RuleLocation.choose(
                    requested: rule.location, countData: table.countData, tableSize: table.tableSize,
                    occupied: table.locations, interface: name)
            } catch NICError.kernel(_, _, let code, _) where operationNotSupportedErrnos.contains(code) {
                guard dryRun else {
                    throw NICError.unsupported(interface: name, driver: ethtool.driverName(name), operation: .ntupleAdd)
                }
                // The driver cannot do ntuple: a dry run still shows the rule.
                location = rule.location
            }
            let shownLocation = location == RuleLocation.any ? nil : location
            var placed = rule
            placed.location = shownLocation
            let result = SteeringResult(
                interface: name, rule: placed, ethtoolCommand: rule.ethtoolCommand(interface: name, location: shownLocation),
                dryRun: dryRun, backend: .ioctl)
            if dryRun { return result }
            let bytes = try rule.flowSpecBytes(location: location ?? RuleLocation.any)
            var landed: UInt32 = 0
            try journaled(name, [.ruleAdded(location: shownLocation, rule: placed)], in: &state) {
                landed = try ethtool.insertRule(name, flowSpec: bytes)
            }
            if shownLocation == nil {
                // The driver chose: record where, so restore can delete it.
                placed.location = landed
                try updateLastEntry(.ruleAdded(location: landed, rule: placed), in: &state)
            }
            return SteeringResult(
                interface: name, rule: placed, ethtoolCommand: rule.ethtoolCommand(interface: name, location: landed),
                dryRun: false, backend: .ioctl)
        }
    }

    /// `ethtool -N IF delete LOC`. A rule Sluice added leaves the journal;
    /// anyone else's is journaled so restore can put it back.
    public func deleteRule(_ name: String, location: UInt32) throws {
        try state.withLock { state in
            let bytes = try ethtool.ruleBytes(name, location: location)
            let added = state.entries.firstIndex { entry in
                guard entry.interface == name, case .ruleAdded(let at?, _) = entry.change else { return false }
                return at == location
            }
            if let index = added {
                try ethtool.deleteRule(name, location: location)
                state.document?.entries.remove(at: index)
                try persist(state.document)
                return
            }
            guard let rule = NtupleRule(flowSpecBytes: bytes) else {
                throw NICError.invalidArgument("the rule at loc \(location) on \(name) is of a flow type Sluice cannot restore; delete it with ethtool")
            }
            try journaled(name, [.ruleDeleted(location: location, rule: rule)], in: &state) {
                try ethtool.deleteRule(name, location: location)
            }
        }
    }

    /// `ethtool -N IF rx-flow-hash TYPE FIELDS`.
    public func setFlowHash(_ name: String, flowType: HashFlowType, fields: FlowHashFields) throws -> Served<FlowHashFields> {
        try state.withLock { state in
            let current = try ethtool.flowHash(name, flowType: flowType).value
            if current != fields {
                try journaled(name, [.flowHash(flowType: flowType, original: current, applied: fields)], in: &state) {
                    try ethtool.setFlowHash(name, flowType: flowType, fields: fields)
                }
            }
            return try ethtool.flowHash(name, flowType: flowType)
        }
    }

    /// `ethtool -X IF ...` with a whole indirection table.
    public func setRSS(_ name: String, indirectionTable: [UInt32]) throws -> Served<RSSConfiguration> {
        try state.withLock { state in
            let current = try ethtool.rss(name).value
            guard indirectionTable.count == current.indirectionTable.count else {
                throw NICError.invalidArgument(
                    "the RSS indirection table of \(name) has \(current.indirectionTable.count) entries, not \(indirectionTable.count)")
            }
            if current.indirectionTable != indirectionTable {
                try journaled(name, [.rss(original: current.indirectionTable, applied: indirectionTable)], in: &state) {
                    try ethtool.setRSS(name, indirectionTable: indirectionTable)
                }
            }
            return try ethtool.rss(name)
        }
    }

    /// Writes a NAPI setting in /sys/class/net/IF (busy polling's
    /// companions), journaled like an ethtool change. An error names the file.
    public func setDeviceSetting(_ name: String, _ setting: NetDeviceSetting, to value: UInt64) throws {
        let interface = try InterfaceName(name)
        try state.withLock { state in
            let current = try NetworkDevice.setting(interface, setting)
            guard current != value else { return }
            try journaled(name, [.sysfs(setting: setting, original: current, applied: value)], in: &state) {
                try NetworkDevice.setSetting(interface, setting, to: value)
            }
        }
    }

    // MARK: Restore

    /// Undoes the journaled sysfs settings of `name` (a pipeline that set
    /// them stops), newest first, as ``restoreAll()`` would.
    public func restoreDeviceSettings(_ name: String) -> RestoreReport {
        state.withLock { state in
            restoreLocked(&state) { entry in
                guard entry.interface == name, case .sysfs = entry.change else { return false }
                return true
            }
        }
    }

    /// Undoes every journaled change, newest first, but only where the
    /// value is still what Sluice set; clears the journal. Each entry leaves
    /// the journal as it is handled, so nothing is restored twice even if
    /// this is interrupted. Nothing is dropped silently: every entry has an
    /// outcome.
    public func restoreAll() -> RestoreReport {
        state.withLock { restoreLocked(&$0) }
    }

    /// At daemon start: a journal from this boot means the last run crashed,
    /// so restore it; one from an earlier boot is reported and discarded.
    public func recoverAtStartup() -> RecoveryReport {
        state.withLock { state in
            let loaded: JournalDocument?
            do {
                loaded = try journal.load()
            } catch {
                let aside = journal.quarantine()
                state.document = nil
                logger.error("NIC journal unreadable, moved to \(aside): \(error)")
                return RecoveryReport(kind: .unreadable, message: "\(error); moved to \(aside)")
            }
            state.document = loaded
            guard let loaded, !loaded.entries.isEmpty else {
                try? journal.clear()
                state.document = nil
                return RecoveryReport(kind: .nothing, message: "no NIC changes to recover")
            }
            if loaded.bootID != bootID {
                try? journal.clear()
                state.document = nil
                let message = "discarded a NIC journal of \(loaded.entries.count) change(s) from an earlier boot (\(loaded.bootID))"
                logger.warning("\(message)")
                return RecoveryReport(kind: .discardedEarlierBoot, journalBootID: loaded.bootID,
                                      discarded: loaded.entries, message: message)
            }
            logger.warning("restoring \(loaded.entries.count) NIC change(s) left by a crashed run")
            let report = restoreLocked(&state)
            let restored = report.with(.restored).count
            return RecoveryReport(
                kind: .restored, journalBootID: loaded.bootID, restore: report,
                message: "restored \(restored) of \(loaded.entries.count) NIC change(s) left by a crashed run")
        }
    }

    /// Restores the entries `selected` picks (all by default), newest
    /// first; the journal is cleared when nothing is left in it.
    private func restoreLocked(_ state: inout State, selected: (JournalEntry) -> Bool = { _ in true }) -> RestoreReport {
        var report = RestoreReport()
        while let index = state.entries.lastIndex(where: selected) {
            let entry = state.entries[index]
            let outcome = restore(entry)
            report.outcomes.append(outcome)
            switch outcome.status {
            case .restored: logger.notice("\(outcome.message)")
            case .changedOutside, .interfaceGone: logger.warning("\(outcome.message)")
            case .failed: logger.error("\(outcome.message)")
            }
            state.document?.entries.remove(at: index)
            do {
                try persist(state.document)
            } catch {
                logger.error("\(error)")
            }
        }
        guard state.entries.isEmpty else { return report }
        do {
            try journal.clear()
            state.document = nil
        } catch {
            logger.error("\(error)")
        }
        return report
    }

    private func restore(_ entry: JournalEntry) -> RestoreOutcome {
        let name = entry.interface
        func outcome(_ status: RestoreOutcome.Status, _ message: String) -> RestoreOutcome {
            RestoreOutcome(status: status, interface: name, message: message, entry: entry)
        }
        guard if_nametoindex(name) != 0 else {
            return outcome(.interfaceGone, "\(name) is gone; not restored: \(entry.change.summary)")
        }
        do {
            if let divergence = try divergence(of: entry) {
                return outcome(.changedOutside, "\(divergence): changed outside Sluice since; left as is")
            }
            switch entry.change {
            case let .channels(original, _):
                try ethtool.setChannels(name, original)
                return outcome(.restored, "\(name) channels restored to \(original.summary())")
            case let .rings(original, _):
                try ethtool.setRings(name, original)
                return outcome(.restored, "\(name) rings restored to \(original.summary())")
            case let .feature(feature, original, _):
                try ethtool.setFeatures(name, [feature: original])
                return outcome(.restored, "\(name) feature \(feature) restored to \(original ? "on" : "off")")
            case let .ruleAdded(location, _):
                guard let location else {
                    return outcome(.failed, "\(name) has an ntuple rule Sluice added whose location was never recorded; check ethtool -n \(name)")
                }
                try ethtool.deleteRule(name, location: location)
                return outcome(.restored, "\(name) ntuple rule at loc \(location) deleted")
            case let .ruleDeleted(location, rule):
                _ = try ethtool.insertRule(name, flowSpec: try rule.flowSpecBytes(location: location))
                return outcome(.restored, "\(name) ntuple rule at loc \(location) put back")
            case let .flowHash(type, original, _):
                try ethtool.setFlowHash(name, flowType: type, fields: original)
                return outcome(.restored, "\(name) rx-flow-hash \(type.rawValue) restored to \(original.letters)")
            case let .rss(original, _):
                try ethtool.setRSS(name, indirectionTable: original)
                return outcome(.restored, "\(name) RSS indirection table restored")
            case let .sysfs(setting, original, _):
                try NetworkDevice.setSetting(try InterfaceName(name), setting, to: original)
                return outcome(.restored, "\(name) \(setting.rawValue) restored to \(original)")
            }
        } catch {
            return outcome(.failed, "\(name): restoring \(entry.change.summary) failed: \(error)")
        }
    }

    /// nil while the NIC still shows what Sluice set for `entry`; otherwise
    /// what it shows instead.
    private func divergence(of entry: JournalEntry) throws -> String? {
        let name = entry.interface
        switch entry.change {
        case let .channels(_, applied):
            let current = try ethtool.channels(name).value
            if applied.isVisible(in: current) { return nil }
            return "\(name) channels are \(applied.original(in: current).summary()), not \(applied.summary()) as Sluice set"
        case let .rings(_, applied):
            let current = try ethtool.rings(name).value
            if applied.isVisible(in: current) { return nil }
            return "\(name) rings are \(applied.original(in: current).summary()), not \(applied.summary()) as Sluice set"
        case let .feature(feature, _, applied):
            guard let current = try ethtool.features(name).value[feature] else {
                return "\(name) no longer has feature \(feature)"
            }
            if current.requested == applied { return nil }
            return "\(name) feature \(feature) is \(current.requested ? "on" : "off"), not \(applied ? "on" : "off") as Sluice set"
        case let .ruleAdded(location, rule):
            guard let location else { return nil }
            guard let present = try? ethtool.ruleBytes(name, location: location) else {
                return "\(name) ntuple rule at loc \(location) was deleted"
            }
            // Drivers may hand back masks and unused fields normalised
            // differently from what was inserted; flow type and action are
            // what every driver returns as given.
            if let found = NtupleRule(flowSpecBytes: present), found.flowType == rule.flowType, found.action == rule.action {
                return nil
            }
            return "\(name) ntuple rule at loc \(location) is not the one Sluice added"
        case let .ruleDeleted(location, _):
            if (try? ethtool.ruleBytes(name, location: location)) == nil { return nil }
            return "\(name) loc \(location) holds another rule now"
        case let .flowHash(type, _, applied):
            let current = try ethtool.flowHash(name, flowType: type).value
            if current == applied { return nil }
            return "\(name) rx-flow-hash \(type.rawValue) is \(current.letters), not \(applied.letters) as Sluice set"
        case let .rss(_, applied):
            if try ethtool.rss(name).value.indirectionTable == applied { return nil }
            return "\(name) RSS indirection table differs from what Sluice set"
        case let .sysfs(setting, _, applied):
            let current = try NetworkDevice.setting(try InterfaceName(name), setting)
            if current == applied { return nil }
            return "\(name) \(setting.rawValue) is \(current), not \(applied) as Sluice set"
        }
    }

    // MARK: Outside changes

    /// Starts watching for changes made by others (ethtool monitor group,
    /// rtnetlink link events). An event that touches an interface with
    /// journaled changes is checked against what Sluice set; differences
    /// are logged and kept for ``outsideChanges(_:)``. `onEvent` sees every
    /// event, with the differences it revealed, on the monitor's thread.
    public func startMonitoring(_ onEvent: @escaping @Sendable (NICEvent, [String]) -> Void = { _, _ in }) throws {
        try state.withLock { state in
            guard state.monitor == nil else { return }
            state.monitor = try NICMonitor { [weak self] event in
                guard let self else { return }
                onEvent(event, self.check(after: event))
            }
        }
    }

    public func stopMonitoring() {
        let running = state.withLock { state -> NICMonitor? in
            defer { state.monitor = nil }
            return state.monitor
        }
        running?.stop()
    }

    /// Values Sluice set that someone else has changed since, newest last.
    public func outsideChanges(_ name: String) -> [String] {
        state.withLock { $0.outside[name] ?? [] }
    }

    private func check(after event: NICEvent) -> [String] {
        state.withLock { state in
            let entries = state.entries.filter { $0.interface == event.interface }
            guard !entries.isEmpty else { return [] }
            var found: [String] = []
            if event.kind == .linkRemoved {
                found.append("\(event.interface) disappeared; \(entries.count) change(s) by Sluice cannot be restored")
            } else {
                for entry in entries where Self.event(event.kind, concerns: entry.change) {
                    if let divergence = try? divergence(of: entry) { found.append(divergence) }
                }
            }
            for message in found where !(state.outside[event.interface] ?? []).contains(message) {
                logger.warning("\(message)")
                state.outside[event.interface, default: []].append(message)
            }
            return found
        }
    }

    private static func event(_ kind: NICEvent.Kind, concerns change: JournaledChange) -> Bool {
        switch (kind, change) {
        case (.channels, .channels), (.rings, .rings), (.features, .feature): return true
        default: return false
        }
    }

    // MARK: Journal plumbing (`state` held)

    private func persist(_ document: JournalDocument?) throws {
        guard let document else { return try journal.clear() }
        if document.entries.isEmpty { return try journal.clear() }
        try journal.save(document)
    }

    /// Records `changes` (coalescing with earlier changes of the same
    /// setting, so the oldest original survives) durably, then runs `apply`.
    /// If `apply` fails the journal goes back to what it was.
    private func journaled(
        _ name: String, _ changes: [JournaledChange], in state: inout State, apply: () throws -> Void
    ) throws {
        if let document = state.document, document.bootID != bootID {
            logger.warning("discarding an unrecovered NIC journal from an earlier boot (\(document.bootID))")
            state.document = nil
        }
        let before = state.document
        var next = state.document ?? JournalDocument(bootID: bootID)
        for change in changes {
            if let index = next.entries.firstIndex(where: { $0.interface == name && $0.change.isSameSetting(as: change) }) {
                next.entries[index].change = next.entries[index].change.coalesced(with: change)
                if next.entries[index].change.isNoOp { next.entries.remove(at: index) }
            } else if !change.isNoOp {
                next.entries.append(JournalEntry(sequence: next.nextSequence, interface: name, change: change))
                next.nextSequence += 1
            }
        }
        state.document = next
        do {
            try persist(next)
        } catch {
            state.document = before
            throw error
        }
        do {
            try apply()
        } catch {
            state.document = before
            do { try persist(before) } catch { logger.error("\(error)") }
            throw error
        }
    }

    private func updateLastEntry(_ change: JournaledChange, in state: inout State) throws {
        guard var next = state.document, !next.entries.isEmpty else { return }
        next.entries[next.entries.count - 1].change = change
        state.document = next
        try persist(next)
    }
}
