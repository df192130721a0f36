import SluiceModules
import SluiceTestSupport
import XCTest

final class HeaderParserTests: XCTestCase {
    let memory = GuardedMemory()

    // Extension headers without their next-header byte (the builder adds it).
    static let hopByHop: (UInt8, [UInt8]) = (0, [0, 1, 4, 0, 0, 0, 0])
    static let routing: (UInt8, [UInt8]) = (43, [0, 4, 0, 0, 0, 0, 0])
    static let destinationOptions: (UInt8, [UInt8]) = (60, [0, 1, 4, 0, 0, 0, 0])
    static let firstFragment: (UInt8, [UInt8]) = (44, [0, 0x00, 0x01, 0, 0, 0, 7])
    static let laterFragment: (UInt8, [UInt8]) = (44, [0, 0x00, 0xB8, 0, 0, 0, 7])  // offset 23 × 8
    static let authentication: (UInt8, [UInt8]) = (51, [2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xAA, 0xBB, 0xCC, 0xDD])

    func addressHigh(_ text: String) -> UInt64 { IPAddressText.parse(text)!.high }
    func addressLow(_ text: String) -> UInt64 { IPAddressText.parse(text)!.low }

    func testUDPOverIPv4() {
        let frame = FrameBuilder(network: FrameBuilder.ipv4("192.0.2.1", "198.51.100.7"), transport: .udp(source: 4000, destination: 53)).build()
        let headers = memory.parse(frame)
        XCTAssertEqual(headers.malformation, .none)
        XCTAssertEqual(headers.etherType, 0x0800)
        XCTAssertEqual(headers.vlanID, 0xFFFF)
        XCTAssertEqual(headers.ipVersion, 4)
        XCTAssertEqual(headers.ipProtocol, 17)
        XCTAssertEqual(headers.l3Offset, 14)
        XCTAssertEqual(headers.l4Offset, 34)
        XCTAssertEqual(headers.payloadOffset, 42)
        XCTAssertEqual(Int(headers.l3End), frame.count)
        XCTAssertEqual(headers.sourcePort, 4000)
        XCTAssertEqual(headers.destinationPort, 53)
        XCTAssertEqual(headers.sourceAddressHigh, 0xC000_0201_0000_0000)
        XCTAssertEqual(headers.sourceAddressLow, 0)
        XCTAssertEqual(headers.destinationAddressHigh, addressHigh("198.51.100.7"))
        XCTAssertEqual(headers.fragment, .none)
    }

    func testTCPOverIPv4WithOptionsOnBothLayers() {
        let frame = FrameBuilder(
            network: .ipv4(source: [10, 1, 1, 1], destination: [10, 2, 2, 2], options: [0x94, 0x04, 0, 0, 1, 1, 1, 0]),
            transport: .tcp(source: 443, destination: 50000, options: [2, 4, 0x05, 0xB4, 1, 1, 1, 0])
        ).build()
        let headers = memory.parse(frame)
        XCTAssertEqual(headers.malformation, .none)
        XCTAssertEqual(headers.ipProtocol, 6)
        XCTAssertEqual(headers.l4Offset, 14 + 28)
        XCTAssertEqual(headers.payloadOffset, 14 + 28 + 28)
        XCTAssertEqual(headers.sourcePort, 443)
        XCTAssertEqual(headers.destinationPort, 50000)
        XCTAssertEqual(headers.destinationAddressHigh, addressHigh("10.2.2.2"))
    }

    func testUDPAndTCPOverIPv6() {
        let udp = memory.parse(FrameBuilder(network: FrameBuilder.ipv6("2001:db8::1", "2001:db8:ffff::2"), transport: .udp(source: 1, destination: 2)).build())
        XCTAssertEqual(udp.malformation, .none)
        XCTAssertEqual(udp.etherType, 0x86DD)
        XCTAssertEqual(udp.ipVersion, 6)
        XCTAssertEqual(udp.ipProtocol, 17)
        XCTAssertEqual(udp.l4Offset, 54)
        XCTAssertEqual(udp.sourceAddressHigh, 0x2001_0DB8_0000_0000)
        XCTAssertEqual(udp.sourceAddressLow, 1)
        XCTAssertEqual(udp.destinationAddressHigh, addressHigh("2001:db8:ffff::2"))
        XCTAssertEqual(udp.destinationAddressLow, 2)
        XCTAssertEqual(udp.extensionHeaderCount, 0)

        let tcp = memory.parse(FrameBuilder(network: FrameBuilder.ipv6(), transport: .tcp(source: 22, destination: 40000)).build())
        XCTAssertEqual(tcp.malformation, .none)
        XCTAssertEqual(tcp.ipProtocol, 6)
        XCTAssertEqual(tcp.sourcePort, 22)
        XCTAssertEqual(tcp.destinationPort, 40000)
        XCTAssertEqual(tcp.payloadOffset, 54 + 20)
    }

    func testICMPPassesThroughWithoutPorts() {
        let v4 = memory.parse(FrameBuilder(network: FrameBuilder.ipv4(), transport: .icmp(type: 8)).build())
        XCTAssertEqual(v4.malformation, .none)
        XCTAssertEqual(v4.ipProtocol, 1)
        XCTAssertEqual(v4.sourcePort, 0)
        XCTAssertEqual(v4.destinationPort, 0)
        let v6 = memory.parse(FrameBuilder(network: FrameBuilder.ipv6(), transport: .icmp(type: 128)).build())
        XCTAssertEqual(v6.malformation, .none)
        XCTAssertEqual(v6.ipProtocol, 58)
        XCTAssertEqual(v6.sourcePort, 0)
    }

    func testNonIPFrameIsNotMalformed() {
        let arp = FrameBuilder.macB + FrameBuilder.macA + [0x08, 0x06] + [UInt8](repeating: 0, count: 28)
        let headers = memory.parse(arp)
        XCTAssertEqual(headers.malformation, .none)
        XCTAssertEqual(headers.etherType, 0x0806)
        XCTAssertEqual(headers.ipVersion, 0)
    }

    func testVLANAndQinQ() {
        var builder = FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 7, destination: 9))
        builder.tags = [(0x8100, 0x2064)]  // PCP 1, VLAN 100
        let single = memory.parse(builder.build())
        XCTAssertEqual(single.malformation, .none)
        XCTAssertEqual(single.vlanID, 100)
        XCTAssertEqual(single.innerVLANID, 0xFFFF)
        XCTAssertEqual(single.etherType, 0x0800)
        XCTAssertEqual(single.l3Offset, 18)
        XCTAssertEqual(single.destinationPort, 9)

        builder.tags = [(0x88A8, 300), (0x8100, 42)]
        builder.network = FrameBuilder.ipv6()
        let double = memory.parse(builder.build())
        XCTAssertEqual(double.malformation, .none)
        XCTAssertEqual(double.vlanID, 300)
        XCTAssertEqual(double.innerVLANID, 42)
        XCTAssertEqual(double.etherType, 0x86DD)
        XCTAssertEqual(double.l3Offset, 22)
        XCTAssertEqual(double.sourcePort, 7)

        builder.tags = [(0x88A8, 1), (0x8100, 2), (0x8100, 3)]
        XCTAssertEqual(memory.parse(builder.build()).malformation, .tooManyVLANTags)
    }

    func testIPv6WithEachExtensionHeader() {
        let cases: [(String, (UInt8, [UInt8]))] = [
            ("hop-by-hop", Self.hopByHop), ("routing", Self.routing), ("destination options", Self.destinationOptions),
            ("fragment", Self.firstFragment), ("authentication", Self.authentication),
        ]
        for (name, ext) in cases {
            let frame = FrameBuilder(
                network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"), extensions: [ext]),
                transport: .udp(source: 1234, destination: 5678)
            ).build()
            let headers = memory.parse(frame)
            XCTAssertEqual(headers.malformation, .none, name)
            XCTAssertEqual(headers.ipProtocol, 17, name)
            XCTAssertEqual(headers.extensionHeaderCount, 1, name)
            XCTAssertEqual(Int(headers.l4Offset), 54 + ext.1.count + 1, name)
            XCTAssertEqual(headers.sourcePort, 1234, name)
            XCTAssertEqual(headers.destinationPort, 5678, name)
        }
        // All of them in a legal order.
        let chain = [Self.hopByHop, Self.destinationOptions, Self.routing, Self.firstFragment, Self.authentication, Self.destinationOptions]
        let headers = memory.parse(FrameBuilder(
            network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"), extensions: chain),
            transport: .tcp(source: 80, destination: 8080)
        ).build())
        XCTAssertEqual(headers.malformation, .none)
        XCTAssertEqual(headers.extensionHeaderCount, 6)
        XCTAssertEqual(headers.ipProtocol, 6)
        XCTAssertEqual(headers.fragment, .first)
        XCTAssertEqual(headers.destinationPort, 8080)
    }

    func testFragments() {
        // IPv4: first fragment has ports; a later one has none.
        let first = memory.parse(FrameBuilder(
            network: .ipv4(source: [1, 1, 1, 1], destination: [2, 2, 2, 2], fragmentField: 0x2000),
            transport: .udp(source: 10, destination: 20)
        ).build())
        XCTAssertEqual(first.malformation, .none)
        XCTAssertEqual(first.fragment, .first)
        XCTAssertEqual(first.destinationPort, 20)
        let later = memory.parse(FrameBuilder(
            network: .ipv4(source: [1, 1, 1, 1], destination: [2, 2, 2, 2], fragmentField: 0x0003),
            transport: .raw(proto: 17, [UInt8](repeating: 0xEE, count: 24))
        ).build())
        XCTAssertEqual(later.malformation, .none)
        XCTAssertEqual(later.fragment, .later)
        XCTAssertEqual(later.ipProtocol, 17)
        XCTAssertEqual(later.sourcePort, 0)
        XCTAssertEqual(later.destinationPort, 0)

        let v6Later = memory.parse(FrameBuilder(
            network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"), extensions: [Self.laterFragment]),
            transport: .raw(proto: 6, [UInt8](repeating: 0xEE, count: 3))
        ).build())
        XCTAssertEqual(v6Later.malformation, .none)
        XCTAssertEqual(v6Later.fragment, .later)
        XCTAssertEqual(v6Later.ipProtocol, 6)
        XCTAssertEqual(v6Later.sourcePort, 0)
    }

    /// Every proper prefix of a valid frame is malformed, and parsing it
    /// never reads past its end (the byte after it is a guard page).
    func testTruncatedAtEveryOffsetIsMalformed() {
        var vlan = FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2))
        vlan.tags = [(0x88A8, 5), (0x8100, 6)]
        let frames: [(String, [UInt8])] = [
            ("udp4", FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2)).build()),
            ("tcp4+options", FrameBuilder(
                network: .ipv4(source: [1, 2, 3, 4], destination: [5, 6, 7, 8], options: [1, 1, 1, 0]),
                transport: .tcp(source: 1, destination: 2, options: [1, 1, 1, 0])).build()),
            ("tcp6+extensions", FrameBuilder(
                network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"),
                               extensions: [Self.hopByHop, Self.routing, Self.authentication]),
                transport: .tcp(source: 1, destination: 2)).build()),
            ("udp6", FrameBuilder(network: FrameBuilder.ipv6(), transport: .udp(source: 1, destination: 2)).build()),
            ("qinq", vlan.build()),
        ]
        for (name, frame) in frames {
            XCTAssertEqual(memory.parse(frame).malformation, .none, name)
            for length in 0..<frame.count {
                let headers = memory.parse(frame, length: length)
                XCTAssertNotEqual(headers.malformation, .none, "\(name) cut to \(length) bytes")
            }
        }
    }

    func testBadIPv4HeaderLengths() {
        var frame = FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2)).build()
        frame[14] = 0x44  // IHL 4 < 5
        XCTAssertEqual(memory.parse(frame).malformation, .badIPv4HeaderLength)
        frame[14] = 0x4F  // IHL 15 = 60 bytes > total length 34
        XCTAssertEqual(memory.parse(frame).malformation, .badIPv4HeaderLength)
        frame[14] = 0x45
        frame[16] = 0x01  // total length 256 + 34 > frame
        XCTAssertEqual(memory.parse(frame).malformation, .truncatedIPv4)
        frame[16] = 0
        frame[17] = 19  // total length below the minimum header
        XCTAssertEqual(memory.parse(frame).malformation, .badIPv4TotalLength)
        frame[17] = 34
        frame[14] = 0x65  // version 6 in an IPv4 EtherType
        XCTAssertEqual(memory.parse(frame).malformation, .badIPVersion)
    }

    func testBadTCPDataOffsetAndUDPLength() {
        var tcp = FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: 1, destination: 2)).build()
        let offsetByte = 14 + 20 + 12
        tcp[offsetByte] = 0x40  // 16 bytes < 20
        XCTAssertEqual(memory.parse(tcp).malformation, .badTCPDataOffset)
        tcp[offsetByte] = 0xF0  // 60 bytes > segment
        XCTAssertEqual(memory.parse(tcp).malformation, .badTCPDataOffset)

        var udp = FrameBuilder(network: FrameBuilder.ipv6(), transport: .udp(source: 1, destination: 2)).build()
        udp[54 + 4] = 0
        udp[54 + 5] = 7  // below the UDP header
        XCTAssertEqual(memory.parse(udp).malformation, .badUDPLength)
        udp[54 + 5] = 200  // beyond the IP payload
        XCTAssertEqual(memory.parse(udp).malformation, .badUDPLength)
    }

    func testExtensionHeaderLoopsAndBadChains() {
        func parse(_ extensions: [(UInt8, [UInt8])]) -> PacketHeaders {
            memory.parse(FrameBuilder(
                network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"), extensions: extensions),
                transport: .udp(source: 1, destination: 2)
            ).build())
        }
        XCTAssertEqual(parse(Array(repeating: Self.destinationOptions, count: 8)).malformation, .none)
        XCTAssertEqual(parse(Array(repeating: Self.destinationOptions, count: 9)).malformation, .tooManyExtensionHeaders)
        XCTAssertEqual(parse(Array(repeating: Self.routing, count: 40)).malformation, .tooManyExtensionHeaders)
        XCTAssertEqual(parse([Self.destinationOptions, Self.hopByHop]).malformation, .misplacedHopByHop)
        // A header claiming more bytes than the payload holds.
        XCTAssertEqual(parse([(60, [200, 1, 4, 0, 0, 0, 0])]).malformation, .truncatedExtensionHeader)
        XCTAssertEqual(parse([(51, [200, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])]).malformation, .truncatedExtensionHeader)
    }

    /// Random bytes, biased towards the EtherTypes and protocol numbers the
    /// parser follows, never crash it or make it read past the frame.
    func testRandomFramesNeverCrash() {
        // Seeded so that a failure can be replayed: SLUICE_TEST_SEED=<seed>.
        let seed = ProcessInfo.processInfo.environment["SLUICE_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var generator = SplitMix64(seed: seed)
        print("testRandomFramesNeverCrash: SLUICE_TEST_SEED=\(seed)")  // a crash ends the process before any assertion
        let etherTypes: [[UInt8]] = [[0x08, 0x00], [0x86, 0xDD], [0x81, 0x00], [0x88, 0xA8], [0x08, 0x06]]
        let seeds: [[UInt8]] = [
            FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: 1, destination: 2)).build(),
            FrameBuilder(network: .ipv6(source: FrameBuilder.v6("fd00::1"), destination: FrameBuilder.v6("fd00::2"),
                                        extensions: [Self.hopByHop, Self.routing, Self.firstFragment]),
                         transport: .udp(source: 1, destination: 2)).build(),
        ]
        var outcomes = Set<UInt8>()
        for iteration in 0..<100_000 {
            var frame: [UInt8]
            if iteration % 2 == 0 {
                // Mutate a few bytes of a valid frame.
                frame = seeds[iteration / 2 % seeds.count]
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    frame[Int.random(in: 12..<frame.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
                frame = Array(frame.prefix(Int.random(in: 0...frame.count, using: &generator)))
            } else {
                frame = (0..<Int.random(in: 0...160, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if frame.count >= 14 {
                    let type = etherTypes.randomElement(using: &generator)!
                    frame[12] = type[0]
                    frame[13] = type[1]
                }
            }
            let headers = memory.parse(frame)
            outcomes.insert(headers.malformation.rawValue)
            XCTAssertLessThanOrEqual(Int(headers.l4Offset), frame.count, "seed \(seed), iteration \(iteration)")
            XCTAssertLessThanOrEqual(Int(headers.payloadOffset), frame.count, "seed \(seed), iteration \(iteration)")
        }
        // The corpus reached well beyond the Ethernet header.
        XCTAssertGreaterThan(outcomes.count, 8, "malformations seen: \(outcomes.sorted()), seed \(seed)")
    }

    /// The contract with the data path: a batch's headers are one flat,
    /// reference-free array, one cache line per frame.
    func testPacketHeadersIsPlainData() {
        XCTAssertTrue(_isPOD(PacketHeaders.self))
        XCTAssertLessThanOrEqual(MemoryLayout<PacketHeaders>.stride, 64)
        XCTAssertTrue(_isPOD(PacketDescriptor.self))
        XCTAssertEqual(MemoryLayout<PacketDescriptor>.stride, 16)
    }

    func testBatchParseMarksMalformedDescriptors() {
        let umem = TestUMEM()
        let good = FrameBuilder(network: FrameBuilder.ipv4(), transport: .udp(source: 1, destination: 2)).build()
        umem.add(good)
        umem.add(Array(good.prefix(30)))
        umem.add(good)
        umem.add([])
        let batch = PacketBatch(umem: umem.umem, descriptors: umem.descriptors, headers: umem.headers, count: umem.count)
        XCTAssertEqual(HeaderParser.parse(batch), 2)
        XCTAssertEqual((0..<4).map { umem.descriptors[$0].malformed }, [false, true, false, true])
        XCTAssertEqual(umem.headers[0].destinationPort, 2)
        XCTAssertEqual(umem.headers[1].malformation, .truncatedIPv4)
        XCTAssertEqual(umem.headers[3].malformation, .truncatedEthernet)
    }
}

