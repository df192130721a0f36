import Foundation
import SluiceDataPath
import SluiceModules
import SluiceTestSupport
import Synchronization
import XCTest

/// Records the RX metadata the data path hands the modules, per UDP
/// destination port (the test flows differ in port).
final class MetadataTally: PacketModule {
    let kind = "test-metadata"
    var wantsRxMetadata: Bool { true }
    private let tally = Mutex<(packets: Int, withHash: Int, withL4Hash: Int, withTimestamp: Int, hashes: [UInt16: Set<UInt32>])>(
        (0, 0, 0, 0, [:]))

    func process(_ batch: PacketBatch) {
        tally.withLock { tally in
            for index in 0..<batch.count {
                let metadata = batch.rxMetadata(at: index)
                tally.packets += 1
                if metadata.hasTimestamp { tally.withTimestamp += 1 }
                if metadata.hasL4Hash { tally.withL4Hash += 1 }
                if metadata.hasHash {
                    tally.withHash += 1
                    tally.hashes[batch.headers[index].destinationPort, default: []].insert(metadata.hash)
                }
            }
        }
    }

    var packets: Int { tally.withLock { $0.packets } }
    var withHash: Int { tally.withLock { $0.withHash } }
    var withL4Hash: Int { tally.withLock { $0.withL4Hash } }
    var withTimestamp: Int { tally.withLock { $0.withTimestamp } }
    var hashes: [UInt16: Set<UInt32>] { tally.withLock { $0.hashes } }

    func snapshot() -> ModuleSnapshot { ModuleSnapshot(kind: kind, counters: ["packets": UInt64(packets)]) }
}

/// Driver RX metadata end to end on a real veth (copy mode): the
/// device-bound program loads, stores veth's hash before each frame, the
/// socket copies it into the UMEM with the frame, and count and pcap use it.
final class RxMetadataTests: XCTestCase {
    private var lab: Lab?
    private var directory: URL?

    override func setUpWithError() throws {
        try Privilege.require()
        setenv("LIBXDP_SKIP_DISPATCHER", "1", 1)
    }

    override func tearDownWithError() throws {
        try lab?.down()
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    private func config(_ lab: Lab, mode: ProcessingMode = .inline) -> DataPathConfig {
        var config = DataPathConfig(interface: lab.appInterface)
        config.mode = mode
        config.bindMode = .copy
        config.geometry.frameCount = 4096
        config.geometry.frameSize = 2048
        return config
    }

    /// Two UDP flows, exactly N packets. With the kfuncs (the probe decides):
    /// every packet carries veth's hash (an L4 hash: one value per flow,
    /// different flows different values), no timestamp (veth's is 0 without
    /// hardware stamps: absent), and count took the driver's hash for every
    /// packet and still tells the flows apart. Without them (Debian 12's
    /// 6.1): the plain program, the reason naming the missing kfuncs, no
    /// metadata anywhere and count hashing the headers. Either way the pcapng
    /// file reads back N packets in tcpdump, stamped in nanoseconds within
    /// the test's wall-clock window, never going back.
    func testDriverHashReachesTheModulesAndPcapngReadsBack() throws {
        try driverHashReachesTheModules(mode: .inline)
    }

    /// The same with the modules on the worker thread, which reads the
    /// metadata out of the UMEM after the hand-off.
    func testPipelinedWorkerReadsTheMetadataToo() throws {
        try driverHashReachesTheModules(mode: .pipelined)
    }

    /// What a kernel without the kfuncs runs, on any kernel: `rx_metadata =
    /// "off"` takes the same path (the plain program, pcap's receive-time
    /// stamps, count hashing headers), checked by the same assertions.
    func testWithoutMetadataEveryPacketIsCountedAndStampedWithReceiveTime() throws {
        try driverHashReachesTheModules(mode: .inline, rxMetadata: false)
        try lab?.down()
        lab = nil
        try driverHashReachesTheModules(mode: .pipelined, rxMetadata: false)
    }

    private func driverHashReachesTheModules(mode: ProcessingMode, rxMetadata: Bool = true) throws {
        let feature = KernelFeatures.detected(.xdpRxMetadata)
        let expectsMetadata = rxMetadata && feature.state == .found
        let lab = try Lab.up(queues: 1, prefix: "srm")
        self.lab = lab
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("sluicerxmeta"))
        if let previous = self.directory { try? FileManager.default.removeItem(at: previous) }
        self.directory = directory
        let path = directory.appendingPathComponent("capture.pcapng").path
        let tally = MetadataTally()
        let count = CountModule(options: .init(capacity: 1024, top: 10))
        let pcap = try PcapModule(options: .init(path: path, rxHash: .toeplitz))
        let started = Date().timeIntervalSince1970
        var config = config(lab, mode: mode)
        config.rxMetadata = rxMetadata
        let pipeline = try Pipeline(
            config: config, bindings: [.identity(channel: 0)], makeModules: { _ in [tally, count, pcap] })
        defer { pipeline.stop() }
        let status = pipeline.rxMetadata
        XCTAssertEqual(status.inUse, expectsMetadata, status.reason)
        if expectsMetadata {
            XCTAssertEqual(status.timestamp, .unseen, "nothing received yet")
        } else if rxMetadata {
            XCTAssertTrue(status.reason.hasPrefix("this kernel has no \(feature.title)"), status.reason)
        } else {
            XCTAssertTrue(status.reason.contains("rx_metadata = \"off\""), status.reason)
        }

        let perWorker = 500
        let flows = UDPFlows(lab: lab, ports: [9000, 9001])
        try flows.send(perWorker: perWorker)
        let sent = 2 * perWorker * flows.ports.count
        try waitUntil("\(sent) packets seen by the modules", timeout: .seconds(20)) { tally.packets >= sent }
        pipeline.stop()
        let ended = Date().timeIntervalSince1970

        XCTAssertEqual(tally.packets, sent)
        let statistics = pipeline.statistics()
        let xdp = statistics.xdp.filter { $0.redirected > 0 }
        XCTAssertEqual(xdp.map(\.redirected), [UInt64(sent)], "\(statistics.xdp)")
        let counted = count.snapshot()
        XCTAssertEqual(counted.counters["packets"], UInt64(sent))
        XCTAssertEqual(counted.counters["flows"], 2)
        XCTAssertEqual(Set(count.flows().map(\.packets)), [UInt64(2 * perWorker)])
        if expectsMetadata {
            XCTAssertEqual(tally.withHash, sent, "every packet carried veth's hash")
            XCTAssertEqual(tally.withL4Hash, sent, "veth's hash of a UDP packet covers the ports")
            XCTAssertEqual(tally.withTimestamp, 0, "veth stamps 0 without hardware time: absent")
            let hashes = tally.hashes
            XCTAssertEqual(hashes.keys.sorted(), [9000, 9001])
            XCTAssertEqual(hashes[9000]?.count, 1, "one flow, one hash: \(hashes)")
            XCTAssertEqual(hashes[9001]?.count, 1, "one flow, one hash: \(hashes)")
            XCTAssertNotEqual(hashes[9000], hashes[9001], "two flows, two hashes")
            XCTAssertFalse(hashes.values.contains([0]), "a hash of 0 is no hash")

            XCTAssertEqual(xdp.map(\.metadataWritten), [UInt64(sent)], "\(statistics.xdp)")
            XCTAssertEqual(xdp.map(\.hashAbsent), [0])
            XCTAssertEqual(xdp.map(\.hashUnsupported), [0])
            XCTAssertEqual(xdp.map(\.timestampAbsent), [UInt64(sent)])
            XCTAssertEqual(xdp.map(\.metadataNoRoom), [0])
            XCTAssertEqual(statistics.rxMetadata?.hash, .provided)
            XCTAssertEqual(statistics.rxMetadata?.timestamp, .absent)
            XCTAssertEqual(counted.counters["driver_hash_packets"], UInt64(sent))
        } else {
            XCTAssertEqual(tally.withHash + tally.withL4Hash + tally.withTimestamp, 0, "no metadata reaches the modules")
            XCTAssertEqual(xdp.map(\.metadataWritten), [0], "the plain program stores none")
            XCTAssertEqual(statistics.rxMetadata?.hash, .off)
            XCTAssertEqual(statistics.rxMetadata?.timestamp, .off)
            XCTAssertEqual(counted.counters["driver_hash_packets"], 0, "count hashed the headers")
        }

        let file = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(file.prefix(4).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, 0x0A0D_0D0A, "a pcapng file")
        // rx_hash = "toeplitz": each block carries the hash the modules saw, where there was one.
        let blockHashes = epbHashes(file)
        XCTAssertEqual(blockHashes.count, sent, "one enhanced packet block per packet")
        if expectsMetadata {
            XCTAssertEqual(Set(blockHashes.compactMap { $0 }), tally.hashes.values.reduce([]) { $0.union($1) })
            XCTAssertEqual(blockHashes.filter { $0 == nil }.count, 0, "every block has epb_hash")
        } else {
            XCTAssertEqual(blockHashes.compactMap { $0 }, [], "no hash, no option")
        }
        try assertReceiveTimeStamps(path, packets: sent, started: started, ended: ended)
        XCTAssertEqual(pcap.snapshot().counters["driver_timestamps"], 0)
    }

    /// The epb_hash value (algorithm 5) of each enhanced packet block of a
    /// pcapng file in this host's byte order, nil for a block without
    /// options; walks the blocks by their lengths.
    private func epbHashes(_ file: Data) -> [UInt32?] {
        let bytes = [UInt8](file)
        func word(_ offset: Int) -> UInt32 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self) } }
        var hashes: [UInt32?] = []
        var offset = 0
        while offset + 12 <= bytes.count {
            let length = Int(word(offset + 4))
            guard length >= 12, offset + length <= bytes.count else { break }
            if word(offset) == 6 {
                let optionsAt = offset + 28 + ((Int(word(offset + 20)) + 3) & ~3)
                if optionsAt + 12 <= offset + length - 4, word(optionsAt) == 3 | 5 << 16, bytes[optionsAt + 4] == 5 {
                    hashes.append(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: optionsAt + 5, as: UInt32.self) })
                } else {
                    hashes.append(nil)
                }
            }
            offset += length
        }
        return hashes
    }

    /// `rx_metadata = "off"`: the plain program, nothing read, count hashes
    /// the headers, status says why.
    func testOffLoadsThePlainProgram() throws {
        let lab = try Lab.up(queues: 1, prefix: "srn")
        self.lab = lab
        let count = CountModule(options: .init(capacity: 1024, top: 10))
        var config = config(lab)
        config.rxMetadata = false
        let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0)], makeModules: { _ in [count] })
        defer { pipeline.stop() }
        XCTAssertFalse(pipeline.rxMetadata.inUse)
        XCTAssertTrue(pipeline.rxMetadata.reason.contains("rx_metadata = \"off\""), pipeline.rxMetadata.reason)
        let flows = UDPFlows(lab: lab, ports: [9000])
        try flows.send(perWorker: 50)
        try waitUntil("100 packets counted", timeout: .seconds(20)) { (count.snapshot().counters["packets"] ?? 0) >= 100 }
        XCTAssertEqual(count.snapshot().counters["packets"], 100)
        XCTAssertEqual(count.snapshot().counters["driver_hash_packets"], 0)
        XCTAssertEqual(pipeline.statistics().xdp.map(\.metadataWritten), [0], "the plain program stores none")
    }

    /// A chain without a module that reads RX metadata: the plain program,
    /// which costs less per packet, and the reason says so (on any kernel:
    /// the readers are judged before the kfuncs).
    func testNoReaderLoadsThePlainProgram() throws {
        let lab = try Lab.up(queues: 1, prefix: "srr")
        self.lab = lab
        var config = config(lab)
        config.rxMetadataReaders = false
        let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        defer { pipeline.stop() }
        XCTAssertFalse(pipeline.rxMetadata.inUse)
        XCTAssertTrue(pipeline.rxMetadata.reason.contains("no module of the chain"), pipeline.rxMetadata.reason)
    }

    /// XDP in skb mode cannot run a device-bound program: the plain one
    /// runs and the reason names the mode (on any kernel: the mode is judged
    /// before the kfuncs).
    func testSkbModeFallsBackWithTheReason() throws {
        let lab = try Lab.up(queues: 1, prefix: "srs")
        self.lab = lab
        var config = config(lab)
        config.attachMode = .skb
        let pipeline = try Pipeline(config: config, bindings: [.identity(channel: 0)], makeModules: { _ in [] })
        defer { pipeline.stop() }
        XCTAssertFalse(pipeline.rxMetadata.inUse)
        XCTAssertTrue(pipeline.rxMetadata.reason.contains("skb (generic) mode"), pipeline.rxMetadata.reason)
        XCTAssertEqual(pipeline.statistics().rxMetadata?.hash, .off)
    }
}
