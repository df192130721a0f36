import Foundation
import XCTest

/// The two virtio-net NICs of `tools/vmlab`'s guest: the device under test
/// and its peer, bridged on the host, so what the peer sends the device
/// receives. The guest names them in SLUICE_TEST_VIRTIO_NIC and
/// SLUICE_TEST_VIRTIO_PEER; `tools/vmlab test` also sets SLUICE_REQUIRE_VIRTIO=1.
public struct VirtioNICs {
    public let deviceUnderTest: String
    public let peer: String

    public static var isRequired: Bool {
        ProcessInfo.processInfo.environment["SLUICE_REQUIRE_VIRTIO"] == "1"
    }

    /// Call first in every test that needs them (after nothing else: it
    /// checks privilege too). Skips outside the VM lab; fails when
    /// SLUICE_REQUIRE_VIRTIO=1 and they are not there.
    public static func require(file: StaticString = #filePath, line: UInt = #line) throws -> VirtioNICs {
        try Privilege.require(file: file, line: line)
        let environment = ProcessInfo.processInfo.environment
        let problem: String
        if let nic = environment["SLUICE_TEST_VIRTIO_NIC"], let peer = environment["SLUICE_TEST_VIRTIO_PEER"],
           !nic.isEmpty, !peer.isEmpty {
            let missing = try [nic, peer].filter { try !linkExists($0) }
            if missing.isEmpty { return VirtioNICs(deviceUnderTest: nic, peer: peer) }
            problem = "\(missing.joined(separator: " and ")) not in this network namespace (left in a lab namespace by an earlier test?)"
        } else {
            problem = "the virtio-net NICs of the VM lab (tools/vmlab sets SLUICE_TEST_VIRTIO_NIC and SLUICE_TEST_VIRTIO_PEER)"
        }
        if isRequired {
            XCTFail("SLUICE_REQUIRE_VIRTIO=1 but this test needs \(problem)", file: file, line: line)
            throw XCTSkip("failed: no virtio-net NICs")
        }
        throw XCTSkip("needs \(problem)")
    }
}

/// `ethtool -l` as read by the `ethtool` program (the oracle): counts by
/// lower-case name (rx, tx, other, combined; n/a reads as 0).
public struct EthtoolChannels: Equatable {
    public var maximum: [String: Int]
    public var current: [String: Int]

    public init(_ interface: String, in namespace: String? = nil) throws {
        let text = try inNamespace(namespace, ["ethtool", "-l", interface], check: true).stdout
        let sections = text.components(separatedBy: "Current hardware settings:")
        maximum = Self.counts(sections.first ?? "")
        current = Self.counts(sections.count > 1 ? sections[1] : "")
    }

    private static func counts(_ section: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in section.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].contains(" ") else { continue }
            counts[parts[0].lowercased()] = Int(parts[1]) ?? 0
        }
        return counts
    }
}

extension Lab {
    /// A lab of two existing NICs instead of a veth pair: `nics.peer` becomes
    /// the generator end, moved into a new namespace `<name>-gen`; the device
    /// under test is the app end and stays in this namespace (where the
    /// daemon runs, as in the veth lab). Both get the lab's addresses, IPv6
    /// off (no neighbour discovery among the counted packets) and are set up.
    /// ``down()`` gives them back as found: the peer moved back, addresses
    /// flushed, link state, IPv6 and combined channels as they were.
    public static func adopt(_ nics: VirtioNICs, prefix: String = "svio") throws -> Lab {
        let found = try [nics.deviceUnderTest, nics.peer].map(AdoptedNICs.State.init)
        let lab = Lab(
            name: uniqueName(prefix).prefix(11).description, queues: found[0].channels.maximum["combined"] ?? 0,
            appInNamespace: false, xpsQueues: nil, subnet: try unusedSubnet(),
            interfaces: (nics.deviceUnderTest, nics.peer))
        lab.adopted = AdoptedNICs(states: found)
        try lab.up()
        return lab
    }
}

/// What ``Lab/adopt(_:prefix:)`` changes on the NICs, and how to undo it.
struct AdoptedNICs {
    struct State {
        var interface: String
        var channels: EthtoolChannels
        var wasUp: Bool
        var ipv6Disabled: String

        init(_ interface: String) throws {
            self.interface = interface
            channels = try EthtoolChannels(interface)
            wasUp = try run(["ip", "-o", "link", "show", "dev", interface], check: true).stdout.contains(",UP")
            ipv6Disabled = try run(["sysctl", "-n", "net.ipv6.conf.\(interface).disable_ipv6"], check: true)
                .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    var states: [State]

    func up(_ lab: Lab) throws {
        let namespace = lab.generatorNamespace
        try run(["ip", "netns", "add", namespace], check: true)
        try run(["ip", "link", "set", "dev", lab.generatorInterface, "netns", namespace], check: true)
        for (space, interface, address) in [(nil, lab.appInterface, lab.appAddress),
                                            (namespace, lab.generatorInterface, lab.generatorAddress)] {
            try inNamespace(space, ["sysctl", "-qw", "net.ipv6.conf.\(interface).disable_ipv6=1"], check: true)
            try inNamespace(space, ["ip", "addr", "add", "\(address)/\(lab.prefixLength)", "dev", interface], check: true)
            try inNamespace(space, ["ip", "link", "set", "dev", interface, "up"], check: true)
        }
    }

    /// Does every step even when one fails, then throws the first failure.
    func down(_ lab: Lab) throws {
        var failures: [Error] = []
        func attempt(_ argv: [String]) {
            do { try run(argv, check: true) } catch { failures.append(error) }
        }
        // Deleting the namespace would return the peer too (a physical
        // device goes back to the initial namespace), but later, from the
        // kernel's clean-up work: move it back now, so the next lab finds it.
        if (try? linkExists(lab.generatorInterface, in: lab.generatorNamespace)) == true {
            attempt(["ip", "-n", lab.generatorNamespace, "link", "set", "dev", lab.generatorInterface, "netns", "1"])
        }
        if (try? networkNamespaces().contains(lab.generatorNamespace)) == true {
            attempt(["ip", "netns", "del", lab.generatorNamespace])
        }
        for state in states {
            attempt(["ip", "addr", "flush", "dev", state.interface])
            attempt(["ip", "link", "set", "dev", state.interface, state.wasUp ? "up" : "down"])
            attempt(["sysctl", "-qw", "net.ipv6.conf.\(state.interface).disable_ipv6=\(state.ipv6Disabled)"])
            let combined = state.channels.current["combined"] ?? 0
            if combined > 0, (try? EthtoolChannels(state.interface).current["combined"]) != combined {
                attempt(["ethtool", "-L", state.interface, "combined", String(combined)])
            }
        }
        if let first = failures.first { throw first }
    }
}
