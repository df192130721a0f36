import Foundation

/// A veth lab made by `tools/lab` for one test: the generator end in its own
/// network namespace, the app end in the root namespace or in a namespace of
/// its own. Names are unique so labs can run side by side. ``adopt(_:prefix:)``
/// makes the same lab of two existing NICs instead (the VM lab's virtio-net).
///
/// Call ``down()`` in `tearDown`, `addTeardownBlock` or a `defer`; deinit is
/// only a safety net.
public final class Lab {
    /// The name prefix: netns `<name>-gen`, links `<name>-app` / `<name>-gen`.
    public let name: String
    /// veth: rx and tx queues of both ends; adopted NICs: the app end's
    /// maximum combined channels.
    public let queues: Int
    /// Generator tx queues CPUs map to (CPU c sends on `xpsQueues[c % count]`).
    public let xpsQueues: [Int]
    public let generatorNamespace: String
    /// nil when the app end lives in the root namespace.
    public let appNamespace: String?
    public let appInterface: String
    public let generatorInterface: String
    public let appAddress: String
    public let generatorAddress: String
    public let prefixLength: Int

    private var isUp = false
    /// Set for a lab of existing NICs (no tools/lab), with what to restore.
    var adopted: AdoptedNICs?

    public static var script: URL { repositoryRoot.appendingPathComponent("tools/lab") }

    init(
        name: String, queues: Int, appInNamespace: Bool, xpsQueues: [Int]?, subnet: Int,
        interfaces: (app: String, generator: String)? = nil
    ) {
        self.name = name
        self.queues = queues
        self.xpsQueues = xpsQueues ?? Array(0..<queues)
        generatorNamespace = "\(name)-gen"
        appNamespace = appInNamespace ? "\(name)-app" : nil
        appInterface = interfaces?.app ?? "\(name)-app"
        generatorInterface = interfaces?.generator ?? "\(name)-gen"
        appAddress = "10.77.\(subnet).1"
        generatorAddress = "10.77.\(subnet).2"
        prefixLength = 24
    }

    /// Creates a lab with a unique name and, in the root namespace, a /24 that no
    /// other interface uses (two labs on one subnet would steal each other's replies).
    public static func up(
        queues: Int = 2, appInNamespace: Bool = false, xpsQueues: [Int]? = nil,
        prefix: String = "slab"
    ) throws -> Lab {
        let lab = Lab(
            name: uniqueName(prefix).prefix(11).description, queues: queues,
            appInNamespace: appInNamespace, xpsQueues: xpsQueues, subnet: try unusedSubnet())
        try lab.up()
        return lab
    }

    /// Runs `tools/lab up` (again): verifies the lab, recreating it if it differs.
    public func up() throws {
        isUp = true
        do {
            if let adopted { try adopted.up(self) } else { try run(arguments("up"), check: true) }
        } catch {
            try? down()
            throw error
        }
    }

    /// Removes everything; fine to call more than once.
    public func down() throws {
        isUp = false
        if let adopted { try adopted.down(self) } else { try run(arguments("down"), check: true) }
    }

    /// `tools/lab status` for this lab (exit 0 when up, 1 when not).
    public func status() throws -> CommandResult {
        if adopted != nil { return try run(["ip", "-n", generatorNamespace, "link", "show", "dev", generatorInterface]) }
        return try run(arguments("status"))
    }

    /// The argv of `tools/lab <command>` with this lab's options.
    public func arguments(_ command: String) -> [String] {
        var argv = [Lab.script.path, command, "--name", name, "--queues", String(queues),
                    "--app-addr", "\(appAddress)/\(prefixLength)",
                    "--gen-addr", "\(generatorAddress)/\(prefixLength)",
                    "--xps-queues", xpsQueues.map(String.init).joined(separator: ",")]
        if appNamespace != nil { argv.append("--app-netns") }
        return argv
    }

    /// The argv that runs `argv` where the app end lives (e.g. to start sluiced).
    public func appCommand(_ argv: [String]) -> [String] { namespaceCommand(appNamespace, argv) }

    @discardableResult
    public func inApp(_ argv: [String], check: Bool = false) throws -> CommandResult {
        try inNamespace(appNamespace, argv, check: check)
    }

    @discardableResult
    public func inGenerator(_ argv: [String], check: Bool = false) throws -> CommandResult {
        try inNamespace(generatorNamespace, argv, check: check)
    }

    /// veth counts packets per rx queue (`rx_queue_N_xdp_packets` in `ethtool -S`)
    /// only on its NAPI path: with an XDP program attached, or with GRO on the
    /// receiver and TSO off on the sender, which this switches on.
    public func enablePerQueueCounters() throws {
        try inApp(["ethtool", "-K", appInterface, "gro", "on"], check: true)
        try inGenerator(["ethtool", "-K", generatorInterface, "tso", "off"], check: true)
    }

    /// Packets received per rx queue of the app end, index = queue id, read
    /// from `ethtool -S` (the oracle, not Sluice's own counters): veth's and
    /// virtio_net's `rx_queue_N_xdp_packets`, which virtio_net spells
    /// `rxN_xdp_packets` since Linux 6.10. No such counter at all is an
    /// error, not zero packets.
    public func appReceivedPerQueue() throws -> [Int] {
        let statistics = try inApp(["ethtool", "-S", appInterface], check: true).stdout
        var packets = Array(repeating: 0, count: queues)
        var found = false
        for line in statistics.split(separator: "\n") {
            let fields = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count == 2, fields[0].hasSuffix("_xdp_packets"), let count = Int(fields[1]) else { continue }
            let name = fields[0].dropLast("_xdp_packets".count)
            let prefix = name.hasPrefix("rx_queue_") ? "rx_queue_" : "rx"
            guard name.hasPrefix(prefix), let queue = Int(name.dropFirst(prefix.count)), packets.indices.contains(queue) else {
                continue
            }
            packets[queue] = count
            found = true
        }
        guard found else {
            throw NoPerQueueCounters(interface: appInterface, statistics: statistics)
        }
        return packets
    }

    deinit {
        if isUp { try? down() }
    }

    /// A third octet for 10.77.X.0/24 that no root-namespace address uses.
    static func unusedSubnet() throws -> Int {
        let addresses = try run(["ip", "-4", "-o", "addr", "show"], check: true).stdout
        let used = Set(addresses.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: "inet 10.77.") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        })
        let free = (100...254).filter { !used.contains($0) }
        guard let subnet = free.randomElement() else {
            throw LabSubnetsExhausted(used: used.count)
        }
        return subnet
    }
}

public struct LabSubnetsExhausted: Error, CustomStringConvertible {
    public var used: Int
    public var description: String {
        "no free lab subnet: 10.77.100.0/24 to 10.77.254.0/24 are all in use (\(used) taken); run 'tools/lab down' for stale labs"
    }
}

public struct NoPerQueueCounters: Error, CustomStringConvertible {
    public var interface: String
    public var statistics: String
    public var description: String { "ethtool -S \(interface) has no per-queue xdp_packets counter:\n\(statistics)" }
}
