import Foundation
import SluiceTestSupport
import XCTest

/// tools/lab against the real kernel: namespaces, veth queues, sysctls, XPS, ping.
final class LabTests: XCTestCase {
    private var labs: [Lab] = []

    override func tearDown() {
        for lab in labs { try? lab.down() }
        labs = []
        super.tearDown()
    }

    private func makeLab(queues: Int = 2, appInNamespace: Bool = false, xpsQueues: [Int]? = nil) throws -> Lab {
        try Privilege.require()
        let lab = try Lab.up(queues: queues, appInNamespace: appInNamespace, xpsQueues: xpsQueues)
        labs.append(lab)
        return lab
    }

    func testUpTwiceThenDownLeavesNothingBehind() throws {
        let lab = try makeLab(appInNamespace: true)
        try lab.up()
        XCTAssertEqual(try lab.status().status, 0, "status after the second up")
        XCTAssertTrue(try networkNamespaces().contains(lab.generatorNamespace))
        XCTAssertTrue(try linkExists(lab.appInterface, in: lab.appNamespace))

        try lab.down()
        try lab.down()
        let namespaces = try networkNamespaces()
        XCTAssertFalse(namespaces.contains(lab.generatorNamespace), "\(namespaces)")
        XCTAssertFalse(namespaces.contains(lab.appNamespace!), "\(namespaces)")
        let links = try SluiceTestSupport.run(["ip", "-o", "link", "show"], check: true).stdout
        XCTAssertFalse(links.contains(lab.name + "-"), links)
        XCTAssertEqual(try lab.status().status, 1, "status after down")
    }

    func testUpRecreatesALabThatDiffers() throws {
        let lab = try makeLab()
        // Break it behind the lab's back: up must notice and rebuild.
        try SluiceTestSupport.run(["ip", "link", "set", "dev", lab.appInterface, "down"], check: true)
        try SluiceTestSupport.run(["ip", "addr", "flush", "dev", lab.appInterface], check: true)
        try lab.up()
        let state = try String(contentsOfFile: "/sys/class/net/\(lab.appInterface)/operstate", encoding: .utf8)
        XCTAssertEqual(state.trimmingCharacters(in: .whitespacesAndNewlines), "up")
        let addresses = try SluiceTestSupport.run(["ip", "-4", "-o", "addr", "show", "dev", lab.appInterface], check: true).stdout
        XCTAssertTrue(addresses.contains("\(lab.appAddress)/\(lab.prefixLength)"), addresses)
    }

    func testQueuesAreCreatedAsAskedOnBothEnds() throws {
        let lab = try makeLab(queues: 4)
        for kind in ["rx", "tx"] {
            XCTAssertEqual(try queueCount(kind, lab.appInterface, in: lab.appNamespace), 4, "\(kind) on app end")
            XCTAssertEqual(try queueCount(kind, lab.generatorInterface, in: lab.generatorNamespace), 4, "\(kind) on generator end")
        }
        // The oracle agrees: ethtool reports the veth's channels.
        let channels = try SluiceTestSupport.run(["ethtool", "-l", lab.appInterface], check: true).stdout
        XCTAssertTrue(channels.contains("RX:\t\t4") || channels.contains("RX:\t4"), channels)
    }

    func testIPv6IsDisabledOnBothEnds() throws {
        let lab = try makeLab()
        for (interface, namespace) in [(lab.appInterface, lab.appNamespace), (lab.generatorInterface, lab.generatorNamespace)] {
            let value = try inNamespace(namespace, ["cat", "/proc/sys/net/ipv6/conf/\(interface)/disable_ipv6"], check: true)
            XCTAssertEqual(value.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "1", interface)
            let inet6 = try inNamespace(namespace, ["ip", "-6", "-o", "addr", "show", "dev", interface], check: true)
            XCTAssertEqual(inet6.stdout, "", "\(interface) has IPv6 addresses")
        }
    }

    func testXPSMapsEachCPUToItsQueueOnTheGeneratorEnd() throws {
        let lab = try makeLab(queues: 2)
        try assertXPS(lab)
    }

    func testXPSCanSteerEveryCPUToChosenQueues() throws {
        // The design's non-identity mapping check: 4 queues, generator traffic on 2–3.
        let lab = try makeLab(queues: 4, xpsQueues: [2, 3])
        try assertXPS(lab)
        XCTAssertEqual(try cpusInXPSMask(lab, queue: 0), [])
        XCTAssertEqual(try cpusInXPSMask(lab, queue: 1), [])
    }

    func testXPSSteersEachCPUsTrafficToItsRxQueue() throws {
        // The design's non-identity lab: 4 queues, generator traffic only on 2–3.
        let lab = try makeLab(queues: 4, xpsQueues: [2, 3])
        try lab.enablePerQueueCounters()
        try assertPings(lab) // ARP settled, so what follows is only our pings
        let pings = 5
        for cpu in try onlineCPUs() {
            let target = lab.xpsQueues[cpu % lab.xpsQueues.count]
            let before = try lab.appReceivedPerQueue()
            try lab.inGenerator(
                ["taskset", "-c", String(cpu), "ping", "-q", "-c", String(pings), "-i", "0.01", "-W", "1", lab.appAddress],
                check: true)
            let after = try lab.appReceivedPerQueue()
            for queue in 0..<lab.queues {
                let delta = after[queue] - before[queue]
                if queue == target {
                    XCTAssertGreaterThanOrEqual(delta, pings, "CPU \(cpu) → queue \(queue): \(before) → \(after)")
                } else {
                    XCTAssertEqual(delta, 0, "CPU \(cpu) leaked onto queue \(queue): \(before) → \(after)")
                }
            }
        }
    }

    func testPingCrossesThePairBothWays() throws {
        let lab = try makeLab()
        try assertPings(lab)
    }

    func testAppEndInItsOwnNamespace() throws {
        let lab = try makeLab(appInNamespace: true)
        let appNamespace = try XCTUnwrap(lab.appNamespace)
        XCTAssertFalse(try linkExists(lab.appInterface), "app end should not be in the root namespace")
        XCTAssertTrue(try linkExists(lab.appInterface, in: appNamespace))
        XCTAssertEqual(try queueCount("rx", lab.appInterface, in: appNamespace), 2)
        try assertPings(lab)
    }

    func testTwoLabsSideBySide() throws {
        let first = try makeLab()
        let second = try makeLab(queues: 3)
        XCTAssertNotEqual(first.name, second.name)
        try assertPings(first)
        try assertPings(second)
        try first.down()
        XCTAssertEqual(try second.status().status, 0, "taking one lab down must not touch the other")
    }

    func testBadArgumentsAreRefusedNamingTheProblem() throws {
        try Privilege.require()
        let name = uniqueName("slbad")
        let cases: [([String], String)] = [
            (["up", "--name", name, "--queues", "0"], "--queues '0'"),
            (["up", "--name", name, "--queues", "99999999"], "4096"),
            (["up", "--name", "averyverylongname"], "at most 11"),
            (["up", "--name", "bad/name"], "--name 'bad/name'"),
            (["up", "--name", name, "--app-addr", "10.0.0.300/24"], "--app-addr"),
            (["up", "--name", name, "--queues", "2", "--xps-queues", "2"], "'2' is not a tx queue"),
            (["frobnicate"], "unknown argument 'frobnicate'"),
        ]
        for (arguments, expected) in cases {
            let result = try SluiceTestSupport.run([Lab.script.path] + arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): stderr lacks \(expected): \(result.stderr)")
        }
        XCTAssertFalse(try networkNamespaces().contains("\(name)-gen"), "a refused up created a namespace")
    }

    // MARK: helpers

    private func queueCount(_ kind: String, _ interface: String, in namespace: String?) throws -> Int {
        let listing = try inNamespace(namespace, ["ls", "/sys/class/net/\(interface)/queues"], check: true)
        return listing.stdout.split(separator: "\n").filter { $0.hasPrefix("\(kind)-") }.count
    }

    /// Every possible CPU is in the mask of exactly the queue the lab promised.
    private func assertXPS(_ lab: Lab, file: StaticString = #filePath, line: UInt = #line) throws {
        let cpus = try possibleCPUs()
        for queue in 0..<lab.queues {
            let expected = Set(cpus.filter { lab.xpsQueues[$0 % lab.xpsQueues.count] == queue })
            XCTAssertEqual(try cpusInXPSMask(lab, queue: queue), expected, "tx-\(queue)", file: file, line: line)
        }
    }

    private func cpusInXPSMask(_ lab: Lab, queue: Int) throws -> Set<Int> {
        let path = "/sys/class/net/\(lab.generatorInterface)/queues/tx-\(queue)/xps_cpus"
        let text = try lab.inGenerator(["cat", path], check: true).stdout
        // Comma-separated 32-bit hex words, most significant first.
        let hex = text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: ",", with: "")
        var cpus = Set<Int>()
        for (index, digit) in hex.reversed().enumerated() {
            let nibble = try XCTUnwrap(digit.hexDigitValue, "xps_cpus '\(text)' is not hex")
            for bit in 0..<4 where nibble & (1 << bit) != 0 { cpus.insert(index * 4 + bit) }
        }
        return cpus
    }

    private func possibleCPUs() throws -> [Int] { try cpuList("possible") }
    private func onlineCPUs() throws -> [Int] { try cpuList("online") }

    private func cpuList(_ which: String) throws -> [Int] {
        // "0-1" or "0-3,6"
        let text = try String(contentsOfFile: "/sys/devices/system/cpu/\(which)", encoding: .utf8)
        var cpus: [Int] = []
        for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            let low = try XCTUnwrap(bounds.first), high = bounds.last ?? low
            cpus += Array(low...high)
        }
        return cpus
    }

    private func assertPings(_ lab: Lab, file: StaticString = #filePath, line: UInt = #line) throws {
        var last: CommandResult?
        do {
            try waitUntil("ping from \(lab.generatorNamespace) to \(lab.appAddress)", timeout: .seconds(10)) {
                last = try lab.inGenerator(["ping", "-c", "1", "-W", "1", lab.appAddress])
                return last!.succeeded
            }
            try waitUntil("ping from the app end to \(lab.generatorAddress)", timeout: .seconds(10)) {
                last = try lab.inApp(["ping", "-c", "1", "-W", "1", "-I", lab.appInterface, lab.generatorAddress])
                return last!.succeeded
            }
        } catch {
            XCTFail("\(error); last attempt: \(last.map(String.init(describing:)) ?? "none")", file: file, line: line)
        }
    }
}
