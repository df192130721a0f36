#if canImport(Glibc)
import Glibc
#endif
import CNetlink
import CSluiceShims
import SluiceProtocol
import SluiceSystem

/// The SIOCETHTOOL backend, only reached through ``Ethtool``. Blocking; one
/// datagram socket per instance, safe to share between threads (each ioctl
/// is self-contained).
final class EthtoolIoctl: Sendable {
    private let fd: Int32

    /// Upper bound on string-set and statistics sizes a driver may report,
    /// so a confused driver cannot make us allocate gigabytes.
    static let maximumCount: UInt32 = 1 << 16

    init() throws {
        do {
            fd = try NetworkDevice.ethtoolSocket()
        } catch {
            throw NICError.kernel(operation: .driverInfo, interface: "", errno: error.errno.rawValue, extack: nil)
        }
    }

    deinit { close(fd) }

    // MARK: The one ioctl

    @discardableResult
    func call(_ operation: NICOperation, _ interface: String, _ data: UnsafeMutableRawPointer) throws -> Int32 {
        do {
            return try retryingEINTR("SIOCETHTOOL \(operation.ethtoolOption) \(interface)") {
                sluice_ethtool_ioctl(fd, interface, data)
            }
        } catch {
            throw Self.nicError(error, operation, interface)
        }
    }

    private static func nicError(_ error: SystemCallError, _ operation: NICOperation, _ interface: String) -> NICError {
        let code = error.errno.rawValue
        if code == ENODEV || code == ENAMETOOLONG { return .notFound(interface: interface) }
        return .kernel(operation: operation, interface: interface, errno: code, extack: nil)
    }

    /// The ioctl on a fixed-size structure (ethtool_channels, ...).
    func call<T>(_ operation: NICOperation, _ interface: String, on value: inout T) throws {
        try withUnsafeMutableBytes(of: &value) { _ = try call(operation, interface, $0.baseAddress!) }
    }

    func withBuffer<R>(_ size: Int, _ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(size, 8), alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: max(size, 8))
        defer { buffer.deallocate() }
        return try body(buffer)
    }

    // MARK: Driver info

    func driverInfo(_ interface: String) throws -> DriverInfo {
        // A name the kernel cannot hold names no interface, as ENODEV would say.
        guard let name = try? InterfaceName(interface) else { throw NICError.notFound(interface: interface) }
        do {
            return try NetworkDevice.driverInfo(name, socket: fd)
        } catch {
            throw Self.nicError(error, .driverInfo, interface)
        }
    }

    // MARK: Channels and rings

    func channels(_ interface: String) throws -> Channels {
        var raw = ethtool_channels()
        raw.cmd = UInt32(ETHTOOL_GCHANNELS)
        try call(.channelsGet, interface, on: &raw)
        return Channels(maxRX: raw.max_rx, maxTX: raw.max_tx, maxOther: raw.max_other,
                        maxCombined: raw.max_combined, rx: raw.rx_count, tx: raw.tx_count,
                        other: raw.other_count, combined: raw.combined_count)
    }

    func setChannels(_ interface: String, _ change: ChannelsChange) throws {
        let next = change.applied(to: try channels(interface))
        var raw = ethtool_channels()
        raw.cmd = UInt32(ETHTOOL_SCHANNELS)
        raw.rx_count = next.rx; raw.tx_count = next.tx
        raw.other_count = next.other; raw.combined_count = next.combined
        try call(.channelsSet, interface, on: &raw)
    }

    func rings(_ interface: String) throws -> Rings {
        var raw = ethtool_ringparam()
        raw.cmd = UInt32(ETHTOOL_GRINGPARAM)
        try call(.ringsGet, interface, on: &raw)
        return Rings(rxMax: raw.rx_max_pending, rxMiniMax: raw.rx_mini_max_pending,
                     rxJumboMax: raw.rx_jumbo_max_pending, txMax: raw.tx_max_pending,
                     rx: raw.rx_pending, rxMini: raw.rx_mini_pending,
                     rxJumbo: raw.rx_jumbo_pending, tx: raw.tx_pending)
    }

    func setRings(_ interface: String, _ change: RingsChange) throws {
        let next = change.applied(to: try rings(interface))
        var raw = ethtool_ringparam()
        raw.cmd = UInt32(ETHTOOL_SRINGPARAM)
        raw.rx_pending = next.rx; raw.rx_mini_pending = next.rxMini
        raw.rx_jumbo_pending = next.rxJumbo; raw.tx_pending = next.tx
        try call(.ringsSet, interface, on: &raw)
    }

    // MARK: String sets, features, statistics

    func stringSetCount(_ interface: String, set: UInt32, operation: NICOperation) throws -> UInt32 {
        var count: UInt32 = 0
        do {
            try retryingEINTR("SIOCETHTOOL GSSET_INFO \(interface)") {
                sluice_ethtool_sset_count(fd, interface, set, &count)
            }
        } catch {
            let code = error.errno.rawValue
            if code == ENODEV { throw NICError.notFound(interface: interface) }
            throw NICError.kernel(operation: operation, interface: interface, errno: code, extack: nil)
        }
        guard count <= Self.maximumCount else {
            throw NICError.invalidArgument("\(interface) reports \(count) strings in set \(set), more than \(Self.maximumCount)")
        }
        return count
    }

    func strings(_ interface: String, set: UInt32, count: UInt32, operation: NICOperation) throws -> [String] {
        try withBuffer(sluice_gstrings_size(count)) { buffer in
            sluice_gstrings_init(buffer, set, count)
            try call(operation, interface, buffer)
            let returned = min(sluice_gstrings_count(buffer), count)
            let width = sluice_gstring_len()
            return (0..<returned).map { i in
                let raw = UnsafeRawBufferPointer(start: sluice_gstrings_at(buffer, i), count: width)
                return String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
    }

    func features(_ interface: String) throws -> Features {
        let set = UInt32(ETH_SS_FEATURES.rawValue)
        let count = try stringSetCount(interface, set: set, operation: .featuresGet)
        let names = try strings(interface, set: set, count: count, operation: .featuresGet)
        let blocks = (count + 31) / 32
        return try withBuffer(sluice_gfeatures_size(blocks)) { buffer in
            sluice_gfeatures_init(buffer, blocks)
            try call(.featuresGet, interface, buffer)
            var features: [Feature] = []
            for (index, name) in names.enumerated() where !name.isEmpty {
                let block = sluice_gfeatures_block(buffer, UInt32(index / 32))
                let bit = UInt32(1) << UInt32(index % 32)
                features.append(Feature(
                    name: name, active: block.active & bit != 0, requested: block.requested & bit != 0,
                    changeable: block.available & bit != 0 && block.never_changed & bit == 0))
            }
            return Features(features: features)
        }
    }

    /// Sets kernel-named features (already resolved from aliases).
    func setFeatures(_ interface: String, _ wanted: [String: Bool]) throws {
        let set = UInt32(ETH_SS_FEATURES.rawValue)
        let count = try stringSetCount(interface, set: set, operation: .featuresSet)
        let names = try strings(interface, set: set, count: count, operation: .featuresSet)
        let blocks = (count + 31) / 32
        try withBuffer(sluice_sfeatures_size(blocks)) { buffer in
            sluice_sfeatures_init(buffer, blocks)
            var valid = [UInt32](repeating: 0, count: Int(blocks))
            var requested = [UInt32](repeating: 0, count: Int(blocks))
            for (name, on) in wanted {
                guard let index = names.firstIndex(of: name) else {
                    throw NICError.invalidArgument("unknown feature \(name) on \(interface)")
                }
                valid[index / 32] |= 1 << UInt32(index % 32)
                if on { requested[index / 32] |= 1 << UInt32(index % 32) }
            }
            for i in 0..<Int(blocks) { sluice_sfeatures_set(buffer, UInt32(i), valid[i], requested[i]) }
            try call(.featuresSet, interface, buffer)
        }
    }

    /// ETHTOOL_GPFLAGS with names from GSTRINGS(ETH_SS_PRIV_FLAGS). The
    /// flags are one 32-bit word, so at most 32 of them.
    func privateFlags(_ interface: String) throws -> [PrivateFlag] {
        let set = UInt32(ETH_SS_PRIV_FLAGS.rawValue)
        let count = min(try stringSetCount(interface, set: set, operation: .privateFlagsGet), 32)
        let names = try strings(interface, set: set, count: count, operation: .privateFlagsGet)
        var value = ethtool_value()
        value.cmd = UInt32(ETHTOOL_GPFLAGS)
        try call(.privateFlagsGet, interface, on: &value)
        return names.enumerated().map { PrivateFlag(name: $1, enabled: value.data & (1 << UInt32($0)) != 0) }
    }

    func statistics(_ interface: String) throws -> DriverStatistics {
        let set = UInt32(ETH_SS_STATS.rawValue)
        let count = try stringSetCount(interface, set: set, operation: .statistics)
        let names = try strings(interface, set: set, count: count, operation: .statistics)
        return try withBuffer(sluice_gstats_size(count)) { buffer in
            sluice_gstats_init(buffer, count)
            try call(.statistics, interface, buffer)
            let returned = min(Int(sluice_gstats_count(buffer)), names.count)
            let values = UnsafeBufferPointer(start: sluice_gstats_data(buffer), count: returned)
            return DriverStatistics(counters: (0..<returned).map { DriverCounter(name: names[$0], value: values[$0]) })
        }
    }

    // MARK: ntuple rules

    /// ETHTOOL_GRXCLSRLCNT: the number of rules and `data` (table size, with
    /// RX_CLS_LOC_SPECIAL when the driver picks locations).
    func ruleCount(_ interface: String) throws -> (count: UInt32, data: UInt64) {
        try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_GRXCLSRLCNT), 0, 0)
            try call(.ntupleList, interface, buffer)
            return (sluice_rxnfc_rule_cnt(buffer), sluice_rxnfc_data(buffer))
        }
    }

    /// ETHTOOL_GRXCLSRLALL: the table size and the used locations.
    func ruleLocations(_ interface: String) throws -> (tableSize: UInt32, locations: [UInt32], countData: UInt64) {
        let (count, countData) = try ruleCount(interface)
        guard count <= Self.maximumCount else {
            throw NICError.invalidArgument("\(interface) reports \(count) ntuple rules, more than \(Self.maximumCount)")
        }
        return try withBuffer(sluice_rxnfc_size(count)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_GRXCLSRLALL), 0, count)
            try call(.ntupleList, interface, buffer)
            let returned = min(sluice_rxnfc_rule_cnt(buffer), count)
            let locations = Array(UnsafeBufferPointer(start: sluice_rxnfc_rule_locs(buffer), count: Int(returned)))
            return (UInt32(truncatingIfNeeded: sluice_rxnfc_data(buffer)), locations, countData)
        }
    }

    /// ETHTOOL_GRXCLSRULE: the flow spec bytes at `location`.
    func ruleBytes(_ interface: String, location: UInt32) throws -> [UInt8] {
        try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_GRXCLSRULE), 0, 0)
            let fs = sluice_rxnfc_fs(buffer)!
            fs.storeBytes(of: location, toByteOffset: FlowSpecLayout.location, as: UInt32.self)
            try call(.ntupleList, interface, buffer)
            return Array(UnsafeRawBufferPointer(start: fs, count: FlowSpecLayout.size))
        }
    }

    func rules(_ interface: String) throws -> [NtupleRule] {
        try ruleLocations(interface).locations.compactMap { location in
            NtupleRule(flowSpecBytes: try ruleBytes(interface, location: location))
        }
    }

    /// ETHTOOL_SRXCLSRLINS with finished flow spec bytes. Returns the
    /// location the rule landed at (the driver fills it in for LOC_ANY).
    func insertRule(_ interface: String, flowSpec: [UInt8]) throws -> UInt32 {
        precondition(flowSpec.count == FlowSpecLayout.size)
        return try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_SRXCLSRLINS), 0, 0)
            let fs = sluice_rxnfc_fs(buffer)!
            flowSpec.withUnsafeBytes { fs.copyMemory(from: $0.baseAddress!, byteCount: flowSpec.count) }
            try call(.ntupleAdd, interface, buffer)
            return fs.load(fromByteOffset: FlowSpecLayout.location, as: UInt32.self)
        }
    }

    func deleteRule(_ interface: String, location: UInt32) throws {
        try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_SRXCLSRLDEL), 0, 0)
            sluice_rxnfc_fs(buffer)!.storeBytes(of: location, toByteOffset: FlowSpecLayout.location, as: UInt32.self)
            try call(.ntupleDelete, interface, buffer)
        }
    }

    // MARK: Flow hash and RSS

    func flowHash(_ interface: String, flowType: HashFlowType) throws -> FlowHashFields {
        try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_GRXFH), flowType.kernelValue, 0)
            try call(.flowHashGet, interface, buffer)
            return FlowHashFields(rawValue: sluice_rxnfc_data(buffer))
        }
    }

    func setFlowHash(_ interface: String, flowType: HashFlowType, fields: FlowHashFields) throws {
        try withBuffer(sluice_rxnfc_size(0)) { buffer in
            sluice_rxnfc_init(buffer, UInt32(ETHTOOL_SRXFH), flowType.kernelValue, 0)
            sluice_rxnfc_set_data(buffer, fields.rawValue)
            try call(.flowHashSet, interface, buffer)
        }
    }

    func rss(_ interface: String) throws -> RSSConfiguration {
        // First call with zero sizes asks for the sizes.
        let (indirSize, keySize) = try withBuffer(sluice_rxfh_size(0, 0)) { buffer in
            sluice_rxfh_init(buffer, UInt32(ETHTOOL_GRSSH), 0, 0)
            try call(.rssGet, interface, buffer)
            return (sluice_rxfh_indir_size(buffer), sluice_rxfh_key_size(buffer))
        }
        guard indirSize <= Self.maximumCount, keySize <= 4096 else {
            throw NICError.invalidArgument("\(interface) reports an RSS table of \(indirSize) entries and a \(keySize)-byte key")
        }
        return try withBuffer(sluice_rxfh_size(indirSize, keySize)) { buffer in
            sluice_rxfh_init(buffer, UInt32(ETHTOOL_GRSSH), indirSize, keySize)
            try call(.rssGet, interface, buffer)
            let table = Array(UnsafeBufferPointer(start: sluice_rxfh_indir(buffer), count: Int(indirSize)))
            let key = UnsafeBufferPointer(start: sluice_rxfh_key(buffer), count: Int(keySize))
            return RSSConfiguration(indirectionTable: table, hashKey: key.map(hex2).joined(separator: ":"),
                                    hashFunction: sluice_rxfh_hfunc(buffer))
        }
    }

    /// ETHTOOL_SRSSH with a new indirection table; key and hash function
    /// unchanged.
    func setRSS(_ interface: String, indirectionTable: [UInt32]) throws {
        guard let size = UInt32(exactly: indirectionTable.count), size > 0, size <= Self.maximumCount else {
            throw NICError.invalidArgument("RSS indirection table for \(interface) must have 1...\(Self.maximumCount) entries")
        }
        try withBuffer(sluice_rxfh_size(size, 0)) { buffer in
            sluice_rxfh_init(buffer, UInt32(ETHTOOL_SRSSH), size, 0)
            let table = sluice_rxfh_indir(buffer)!
            for (i, queue) in indirectionTable.enumerated() { table[i] = queue }
            try call(.rssSet, interface, buffer)
        }
    }
}
