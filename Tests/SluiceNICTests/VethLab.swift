import Foundation
import SluiceTestSupport
import XCTest

/// A veth pair for one test: the device under test stays in the root
/// namespace (NIC calls act on the caller's namespace), its peer goes into
/// a namespace of its own. Everything is removed in `tearDown()`.
final class VethLab {
    let device: String
    let peer: String
    let namespace: String

    init(queues: Int = 4) throws {
        device = uniqueName("snic")
        peer = uniqueName("snip")
        namespace = uniqueName("snicns")
        try run(["ip", "netns", "add", namespace], check: true)
        do {
            try run(["ip", "link", "add", device, "numrxqueues", "\(queues)", "numtxqueues", "\(queues)",
                     "type", "veth", "peer", "name", peer,
                     "numrxqueues", "\(queues)", "numtxqueues", "\(queues)"], check: true)
            try run(["ip", "link", "set", peer, "netns", namespace], check: true)
        } catch {
            tearDown()
            throw error
        }
    }

    func tearDown() {
        _ = try? run(["ip", "link", "del", device])
        _ = try? run(["ip", "netns", "del", namespace])
    }

    /// Runs a command inside the peer's namespace.
    @discardableResult
    func inNamespace(_ argv: [String], check: Bool = true) throws -> CommandResult {
        try run(["ip", "netns", "exec", namespace] + argv, check: check)
    }

    /// `ethtool ARGS...` output, failing the test on a non-zero exit.
    func ethtool(_ args: String...) throws -> String {
        try run(["ethtool"] + args, check: true).stdout
    }

    /// The "Current hardware settings" block of `ethtool -l`, as counts
    /// (n/a reads as 0, which is what the kernel reports).
    func ethtoolChannels() throws -> [String: UInt32] {
        let text = try ethtool("-l", device)
        guard let current = text.range(of: "Current hardware settings:") else { return [:] }
        var result: [String: UInt32] = [:]
        for line in text[current.upperBound...].split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            result[parts[0].lowercased()] = UInt32(parts[1]) ?? 0
        }
        return result
    }

    /// `ethtool -k` as name → on, with ethtool's display names.
    func ethtoolFeatures() throws -> [String: Bool] {
        var result: [String: Bool] = [:]
        for line in try ethtool("-k", device).split(separator: "\n").dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            result[parts[0]] = parts[1].hasPrefix("on")
        }
        return result
    }
}

/// A test case with a fresh ``VethLab`` per test (privileged).
class VethTestCase: XCTestCase {
    var lab: VethLab!

    override func setUpWithError() throws {
        try Privilege.require()
        lab = try VethLab()
    }

    override func tearDown() {
        lab?.tearDown()
        lab = nil
    }
}
