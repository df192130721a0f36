import Foundation
import SluiceControl
import SluiceDataPath
import SluiceTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The Prometheus endpoint of a real sluiced, scraped over a plain TCP
/// socket: the text parses strictly, the per-queue rx counters say exactly
/// what was sent and what `stats.get` says, wrong paths and methods get 404
/// and 405, and a taken port stops the start with the address named.
///
/// The daemon listens on `127.0.0.1:0` and `status` reports the bound port:
/// no window between a test choosing a free port and the daemon binding it.
final class MetricsTests: XCTestCase {
    private var lab: Lab?
    private var daemon: DaemonProcess?
    private var plugins: PluginDirectory?

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
    }

    private let metricsOn = "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"

    /// The port from `status`' `metrics` key ("127.0.0.1:PORT").
    private func metricsPort(_ daemon: DaemonProcess) throws -> UInt16 {
        let address = try XCTUnwrap(daemon.call("status")["result"]?["metrics"]?.stringValue)
        XCTAssertTrue(address.hasPrefix("127.0.0.1:"), address)
        return try XCTUnwrap(UInt16(address.split(separator: ":").last ?? ""), address)
    }

    func testScrapeCountsEveryPacketPerQueueAsStatsGetDoes() throws {
        try Privilege.require()
        let plugins = try PluginDirectory.withShippedPlugins()
        self.plugins = plugins
        let lab = try Lab.up(queues: 2, prefix: "smx")
        self.lab = lab
        let daemon = try DaemonProcess(extraConfig: """
            [plugins]
            dir = "\(plugins.path)"

            \(metricsOn)
            [pipeline]
            mode = "pipelined"
            frame_size = 2048

            [[pipeline.modules]]
            kind = "count"

            [[pipeline.modules]]
            kind = "latency"

            [[interface]]
            name = "\(lab.appInterface)"
            prefilter_protocols = ["udp"]
            """)
        self.daemon = daemon
        try daemon.start()
        let port = try metricsPort(daemon)
        let iface = lab.appInterface
        try waitUntil("the pipeline to run") {
            try PrometheusExposition(scrape(port: port).body).value("sluice_pipeline_running", ["iface": iface]) == 1
        }

        let before = try scrape(port: port)
        XCTAssertEqual(before.status, 200)
        XCTAssertEqual(before.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let idle = try PrometheusExposition(before.body)
        // Sockets take chains where XDP and AF_XDP both have multi-buffer (6.6+).
        let multiBuffer: Double = KernelFeatures.detected(.xdpMultiBuffer).state == .found
            && KernelFeatures.detected(.xskMultiBuffer).state == .found ? 1 : 0
        for queue in ["0", "1"] {
            XCTAssertEqual(idle.value("sluice_rx_packets_total", ["iface": iface, "queue": queue]), 0, queue)
            XCTAssertEqual(idle.value("sluice_socket_zero_copy", ["iface": iface, "queue": queue]), 0,
                           "veth binds in copy mode")
            XCTAssertEqual(idle.value("sluice_socket_busy_poll", ["iface": iface, "queue": queue]), 0, "busy_poll is off")
            XCTAssertEqual(idle.value("sluice_busy_poll_kicks_total", ["iface": iface, "queue": queue]), 0, queue)
            XCTAssertNotNil(idle.value("sluice_poll_sleeps_total", ["iface": iface, "queue": queue]), queue)
            XCTAssertEqual(idle.value("sluice_socket_multi_buffer", ["iface": iface, "queue": queue]), multiBuffer, queue)
            XCTAssertEqual(idle.value("sluice_multi_buffer_packets_total", ["iface": iface, "queue": queue]), 0, queue)
            XCTAssertEqual(idle.value("sluice_invalid_chains_total", ["iface": iface, "queue": queue]), 0, queue)
        }
        XCTAssertEqual(idle.value("sluice_plugins", ["status": "loaded"]), 2)
        XCTAssertEqual(idle.value("sluice_plugins", ["status": "rejected"]), 0)
        XCTAssertEqual(idle.value("sluice_build_info", ["version": ControlProtocol.sluiceVersion]), 1)
        XCTAssertGreaterThan(try XCTUnwrap(idle.value("sluice_uptime_seconds", [:])), 0)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(idle.value("sluice_control_commands_total", [:])), 1)

        let flows = UDPFlows(lab: lab, ports: [7001, 7002])
        let perWorker = 400
        try flows.send(perWorker: perWorker)
        let sent = Double(2 * perWorker * flows.ports.count)
        let queues = ["0", "1"]
        let scraped = try waitFor("\(Int(sent)) packets in sluice_rx_packets_total", timeout: .seconds(20)) {
            () -> PrometheusExposition? in
            let metrics = try PrometheusExposition(scrape(port: port).body)
            let received = queues.compactMap { metrics.value("sluice_rx_packets_total", ["iface": iface, "queue": $0]) }
            return received.reduce(0, +) >= sent ? metrics : nil
        }
        let perQueue = queues.map { scraped.value("sluice_rx_packets_total", ["iface": iface, "queue": $0]) ?? -1 }
        XCTAssertEqual(perQueue.reduce(0, +), sent, "\(perQueue)")
        // Each trafgen worker's CPU maps to one queue: both carried traffic.
        XCTAssertEqual(perQueue, [sent / 2, sent / 2])
        XCTAssertEqual(scraped.value("sluice_module_counter_total",
                                     ["iface": iface, "position": "0", "module": "count", "counter": "packets"]),
                       sent)
        XCTAssertEqual(scraped.value("sluice_module_gauge",
                                     ["iface": iface, "position": "0", "module": "count", "gauge": "flows"]), 2)
        // The latency module (position 1): trafgen's frames carry no send
        // stamp, so they count as unstamped and its levels stay 0. Its
        // percentiles and maximum are gauges of their own family, never counters.
        XCTAssertEqual(scraped.types["sluice_latency_nanoseconds"], "gauge")
        for statistic in ["p50", "p90", "p99", "max"] {
            XCTAssertEqual(scraped.value("sluice_latency_nanoseconds",
                                         ["iface": iface, "position": "1", "statistic": statistic]), 0, statistic)
        }
        for name in ["p50_ns", "p90_ns", "p99_ns", "max_ns"] {
            XCTAssertNil(scraped.value("sluice_module_counter_total",
                                       ["iface": iface, "position": "1", "module": "latency", "counter": name]), name)
        }
        XCTAssertEqual(scraped.value("sluice_module_counter_total",
                                     ["iface": iface, "position": "1", "module": "latency", "counter": "unstamped"]),
                       sent)
        for queue in queues {
            XCTAssertEqual(scraped.value("sluice_xdp_redirected_total", ["iface": iface, "queue": queue]), sent / 2, queue)
            XCTAssertEqual(scraped.value("sluice_kernel_dropped_total", ["iface": iface, "queue": queue]), 0, queue)
        }
        // Driver RX metadata (rx_metadata = "auto"): veth stores its hash for
        // every packet where the kernel has the kfuncs, nothing elsewhere.
        let metadataInUse = KernelFeatures.detected(.xdpRxMetadata).state == .found
        XCTAssertEqual(scraped.value("sluice_rx_metadata_in_use", ["iface": iface]), metadataInUse ? 1 : 0)
        for queue in queues {
            XCTAssertEqual(scraped.value("sluice_xdp_rx_metadata_written_total", ["iface": iface, "queue": queue]),
                           metadataInUse ? sent / 2 : 0, queue)
            XCTAssertEqual(scraped.value("sluice_xdp_rx_hash_absent_total", ["iface": iface, "queue": queue]), 0, queue)
        }
        XCTAssertEqual(scraped.value("sluice_module_counter_total",
                                     ["iface": iface, "position": "0", "module": "count", "counter": "driver_hash_packets"]),
                       metadataInUse ? sent : 0)

        // The same numbers as stats.get, socket by socket (traffic has stopped).
        let sockets = try XCTUnwrap(daemon.call("stats.get")["result"]?["pipelines"]?.arrayValue?.first?["statistics"]?["sockets"]?.arrayValue)
        XCTAssertEqual(sockets.count, 2)
        let again = try PrometheusExposition(scrape(port: port).body)
        for socket in sockets {
            let queue = try XCTUnwrap(socket["queue"]?.integer(as: Int.self))
            let channel = try XCTUnwrap(socket["channel"]?.integer(as: Int.self))
            let labels = ["iface": iface, "queue": String(queue), "channel": String(channel)]
            for (metric, key) in [("sluice_rx_packets_total", "rx_packets"), ("sluice_rx_bytes_total", "rx_bytes"),
                                  ("sluice_passed_total", "passed"), ("sluice_dropped_total", "dropped")] {
                let expected = try XCTUnwrap(socket[key]?.integer(as: Int.self), key)
                XCTAssertEqual(again.value(metric, labels), Double(expected), "\(metric) \(labels)")
            }
        }
    }

    func testOnlyGETOnMetricsIsServed() throws {
        let daemon = try DaemonProcess(extraConfig: metricsOn)
        self.daemon = daemon
        try daemon.start()
        let port = try metricsPort(daemon)

        let ok = try scrape(port: port)
        XCTAssertEqual(ok.status, 200)
        // No pipeline: the families are still there, and still parse.
        let metrics = try PrometheusExposition(ok.body)
        XCTAssertTrue(metrics.types.keys.contains("sluice_rx_packets_total"))
        XCTAssertEqual(metrics.types["sluice_rx_packets_total"], "counter")
        XCTAssertNotNil(metrics.value("sluice_control_clients", [:]))
        // The status call's connection closes asynchronously on the daemon's side.
        try waitUntil("sluice_control_clients to drop to 0") {
            try PrometheusExposition(scrape(port: port).body).value("sluice_control_clients", [:]) == 0
        }
        XCTAssertEqual(try scrape(port: port, path: "/metrics?name[]=x").status, 200)

        XCTAssertEqual(try scrape(port: port, path: "/").status, 404)
        XCTAssertEqual(try scrape(port: port, path: "/metricsx").status, 404)
        let post = try scrape(port: port, method: "POST")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET")
        XCTAssertEqual(try scrape(port: port, method: "DELETE").status, 405)
        XCTAssertEqual(try scrape(port: port, path: "/" + String(repeating: "m", count: 3000)).status, 414)
        // Headers past the decoder's limit: refused, and the daemon carries on.
        let huge = try scrape(port: port, extraHeaders: "X-Big: " + String(repeating: "a", count: 20_000) + "\r\n")
        XCTAssertEqual(huge.status, 400)
        let body = try scrape(port: port, method: "PUT", extraHeaders: "Content-Length: 5000\r\n",
                              body: String(repeating: "b", count: 5000))
        XCTAssertEqual(body.status, 413)
        XCTAssertEqual(try scrape(port: port).status, 200)
        XCTAssertTrue(daemon.isRunning)
    }

    func testTakenPortStopsTheStartNamingTheAddress() throws {
        let holder = try ListeningSocket()
        defer { holder.close() }
        let daemon = try DaemonProcess(extraConfig: "[metrics]\nenabled = true\nlisten = \"127.0.0.1:\(holder.port)\"\n")
        self.daemon = daemon
        XCTAssertThrowsError(try daemon.start())
        XCTAssertEqual(try daemon.waitForExit(), 1)
        XCTAssertTrue(daemon.log().contains("cannot serve metrics on 127.0.0.1:\(holder.port)"), daemon.log())
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.socketPath), "no control socket left behind")
    }

    /// The parser used above refuses what Prometheus would refuse.
    func testTheParserIsStrict() throws {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{iface=\"x\\\"y\",queue=\"0\"} 3\n"
        XCTAssertEqual(try PrometheusExposition(good).value("a_total", ["iface": "x\"y", "queue": "0"]), 3)
        let bad = [
            "a_total 1\n",  // no HELP/TYPE
            "# TYPE a_total counter\n# HELP a_total A.\na_total 1\n",  // TYPE before HELP
            "# HELP a A.\n# TYPE a counter\na 1\n",  // counter without _total
            "# HELP a_total A.\n# TYPE a_total counter\na_total{q=\"0\"} 1\na_total{q=\"0\"} 2\n",  // duplicate
            "# HELP a_total A.\n# TYPE a_total counter\na_total{q=0} 1\n",  // unquoted label value
            "# HELP a_total A.\n# TYPE a_total counter\na_total{q=\"\\x\"} 1\n",  // bad escape
            "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",  // not a number
            "# HELP rx_queue0_total A.\n# TYPE rx_queue0_total counter\nrx_queue0_total 1\n",  // queue in the name
            "# HELP a_total A.\n# TYPE a_total counter\n# HELP b B.\n# TYPE b gauge\nb 1\na_total 1\n",  // split family
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1",  // no final line feed
        ]
        for text in bad {
            XCTAssertThrowsError(try PrometheusExposition(text), text)
        }
    }

    func testConnectionsAtOnceAreBounded() throws {
        let daemon = try DaemonProcess(extraConfig: metricsOn)
        self.daemon = daemon
        try daemon.start()
        let port = try metricsPort(daemon)
        // 20 clients that connect and say nothing: 16 hold every slot, the
        // server closes the other 4 (which are readable: EOF or reset).
        var idle: [Int32] = []
        defer { idle.forEach { _ = close($0) } }
        for _ in 0..<20 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            XCTAssertEqual(connected, 0)
            idle.append(fd)
        }
        try waitUntil("the server to close 4 of the 20") {
            var fds = idle.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            return poll(&fds, nfds_t(fds.count), 0) == 4
        }
        XCTAssertThrowsError(try scrape(port: port), "a 17th connection is closed unanswered")
        idle.forEach { _ = close($0) }
        idle = []
        try waitUntil("scrapes to be served again") { (try? scrape(port: port))?.status == 200 }
        XCTAssertTrue(daemon.isRunning)
    }

    func testIPv6Loopback() throws {
        let daemon = try DaemonProcess(extraConfig: "[metrics]\nenabled = true\nlisten = \"[::1]:0\"\n")
        self.daemon = daemon
        try daemon.start()
        let address = try XCTUnwrap(daemon.call("status")["result"]?["metrics"]?.stringValue)
        XCTAssertTrue(address.hasPrefix("[::1]:"), address)
        let port = try XCTUnwrap(UInt16(address.split(separator: ":").last ?? ""), address)
        let reply = try scrape(host: "::1", port: port)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(try PrometheusExposition(reply.body).value("sluice_pipeline_running", [:]), nil)
        XCTAssertThrowsError(try scrape(host: "127.0.0.1", port: port), "listens on ::1 only")
    }

    func testDisabledMetricsListenNowhere() throws {
        let daemon = try DaemonProcess()
        self.daemon = daemon
        try daemon.start()
        XCTAssertEqual(try daemon.call("status")["result"]?["metrics"], .null)
    }
}

/// NIC changes and control-socket errors as metrics: a journaled
/// `channels.set`, then an outside `ethtool -L`, then an unknown command.
final class MetricsNICTests: LabDaemonTestCase {
    override class var labPrefix: String { "smn" }

    func testNICChangesOutsideChangesAndControlErrorsAreCounted() throws {
        daemon.stop()
        daemon = try DaemonProcess(extraConfig: """
            [plugins]
            dir = "\(plugins.path)"

            [metrics]
            enabled = true
            listen = "127.0.0.1:0"
            """)
        try daemon.start()
        let address = try XCTUnwrap(daemon.call("status")["result"]?["metrics"]?.stringValue)
        let port = try XCTUnwrap(UInt16(address.split(separator: ":").last ?? ""), address)
        let iface = ["iface": app]
        XCTAssertNil(try PrometheusExposition(scrape(port: port).body).value("sluice_nic_changes", iface),
                     "no series for an interface Sluice has not touched")

        XCTAssertEqual(try daemon.call("channels.set", ["iface": .string(app), "rx": 2])["ok"], true)
        let changed = try PrometheusExposition(scrape(port: port).body)
        XCTAssertEqual(changed.value("sluice_nic_changes", iface), 1)
        XCTAssertEqual(changed.value("sluice_nic_outside_changes", iface), 0)

        try runCommand(["ethtool", "-L", app, "rx", "3"], check: true)
        try waitUntil("sluice_nic_outside_changes to count the ethtool -L") {
            try PrometheusExposition(scrape(port: port).body).value("sluice_nic_outside_changes", iface) == 1
        }

        XCTAssertEqual(try daemon.call("no.such.command")["error"]?["code"], "unknown_command")
        let errors = try PrometheusExposition(scrape(port: port).body)
        XCTAssertEqual(errors.value("sluice_control_errors_total", ["code": "unknown_command"]), 1)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(errors.value("sluice_control_connections_total", [:])), 4)
    }
}

// MARK: - A raw HTTP/1.1 client

struct HTTPReply {
    var status: Int
    /// Lower-cased names.
    var headers: [String: String]
    var body: String
}

/// One request on a fresh connection; the server closes after its reply, so
/// the reply is everything read until EOF.
func scrape(
    host: String = "127.0.0.1", port: UInt16, method: String = "GET", path: String = "/metrics",
    extraHeaders: String = "", body: String = ""
) throws -> HTTPReply {
    let family = host.contains(":") ? AF_INET6 : AF_INET
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HTTPTestError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let authority = family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    func connect<Address>(to address: Address) -> Int32 {
        withUnsafePointer(to: address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }
    var v4 = sockaddr_in(), v6 = sockaddr_in6()
    v4.sin_family = sa_family_t(AF_INET)
    v4.sin_port = port.bigEndian
    v6.sin6_family = sa_family_t(AF_INET6)
    v6.sin6_port = port.bigEndian
    let parsed = family == AF_INET6 ? inet_pton(family, host, &v6.sin6_addr) : inet_pton(family, host, &v4.sin_addr)
    guard parsed == 1 else { throw HTTPTestError("bad host \(host)") }
    let connected = family == AF_INET6 ? connect(to: v6) : connect(to: v4)
    guard connected == 0 else { throw HTTPTestError("connect to \(authority): \(String(cString: strerror(errno)))") }
    let request = "\(method) \(path) HTTP/1.1\r\nHost: \(authority)\r\n\(extraHeaders)\r\n\(body)"
    var bytes = Array(request.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        // The server may answer (and close) before it has read everything.
        guard written > 0 else { break }
        bytes = bytes.dropFirst(written)
    }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 || (count < 0 && errno == ECONNRESET && !reply.isEmpty) { break }
        guard count > 0 else { throw HTTPTestError("recv from \(authority): \(String(cString: strerror(errno)))") }
        reply += chunk[..<count]
        guard reply.count < 64 << 20 else { throw HTTPTestError("reply larger than 64 MiB") }
    }
    let text = String(decoding: reply, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPTestError("no end of headers in: \(text)") }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = lines[0].split(separator: " ")
    guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
        throw HTTPTestError("bad status line: \(lines[0])")
    }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { throw HTTPTestError("bad header line: \(line)") }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let payload = String(text[split.upperBound...])
    if let length = headers["content-length"] {
        XCTAssertEqual(Int(length), payload.utf8.count, "Content-Length")
    }
    return HTTPReply(status: status, headers: headers, body: payload)
}

struct HTTPTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A TCP socket listening on a kernel-chosen loopback port, to take a port.
final class ListeningSocket {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else { throw HTTPTestError("cannot listen on 127.0.0.1: \(String(cString: strerror(errno)))") }
        port = UInt16(bigEndian: address.sin_port)
    }

    func close() { _ = Glibc.close(fd) }
}

// MARK: - A strict parser for the text exposition format 0.0.4

/// Parses the whole text or throws naming the line. Rules checked: every
/// line is a `# HELP`, a `# TYPE` or a sample `name{labels} value`; each
/// family has HELP then TYPE before its samples and its samples together;
/// counters end in `_total`; label names are valid and not repeated, label
/// values escaped; no series appears twice; names carry no interface or
/// queue (those are labels).
struct PrometheusExposition {
    struct Series: Hashable {
        var name: String
        var labels: [String: String]
    }

    private(set) var samples: [Series: Double] = [:]
    private(set) var types: [String: String] = [:]
    private(set) var help: [String: String] = [:]

    init(_ text: String) throws {
        guard text.isEmpty || text.hasSuffix("\n") else { throw HTTPTestError("the text does not end in a line feed") }
        var current: String?
        var finished: Set<String> = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            func fail(_ why: String) -> HTTPTestError { HTTPTestError("line \(number + 1): \(why): \(line)") }
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count == 4, Self.isMetricName(parts[2]) else { throw fail("malformed comment") }
                let name = String(parts[2])
                if current != name {
                    if let current { finished.insert(current) }
                    guard !finished.contains(name) else { throw fail("family \(name) appears twice") }
                    current = name
                }
                if parts[1] == "HELP" {
                    guard help[name] == nil, types[name] == nil else { throw fail("HELP must come once, before TYPE") }
                    help[name] = String(parts[3])
                } else {
                    guard help[name] != nil else { throw fail("TYPE before HELP") }
                    guard types[name] == nil else { throw fail("second TYPE") }
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw fail("unknown type")
                    }
                    if parts[3] == "counter", !name.hasSuffix("_total") { throw fail("counter without _total") }
                    types[name] = String(parts[3])
                }
                continue
            }
            guard !line.hasPrefix("#"), !line.isEmpty else { throw fail("not a sample, HELP or TYPE line") }
            let (series, value) = try Self.parseSample(Substring(line)).get(orThrow: fail)
            guard series.name == current, types[series.name] != nil else {
                throw fail("sample outside its family's HELP/TYPE block")
            }
            // A queue number or an interface in a name would bring digits.
            guard !series.name.contains(where: \.isNumber) else { throw fail("digits in the metric name") }
            guard samples.updateValue(value, forKey: series) == nil else { throw fail("duplicate series") }
        }
    }

    /// The value of the series with exactly these labels, or of the only one
    /// whose labels include them.
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        if let exact = samples[Series(name: name, labels: labels)] { return exact }
        let matching = samples.filter { entry in
            entry.key.name == name && labels.allSatisfy { entry.key.labels[$0.key] == $0.value }
        }
        return matching.count == 1 ? matching.first?.value : nil
    }

    static func isMetricName<S: StringProtocol>(_ name: S) -> Bool {
        func isLetter(_ scalar: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || scalar == "_" || scalar == ":"
        }
        guard let first = name.unicodeScalars.first, isLetter(first) else { return false }
        return name.unicodeScalars.allSatisfy { isLetter($0) || ("0"..."9").contains($0) }
    }

    static func isLabelName<S: StringProtocol>(_ name: S) -> Bool {
        isMetricName(name) && !name.contains(":") && !name.hasPrefix("__")
    }

    enum ParseFailure: Error { case failed(String) }

    static func parseSample(_ line: Substring) -> Result<(Series, Double), ParseFailure> {
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        guard isMetricName(name) else { return .failure(.failed("bad metric name")) }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { return .failure(.failed("label without =")) }
                let label = String(rest[..<equals])
                guard isLabelName(label) else { return .failure(.failed("bad label name \(label)")) }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { return .failure(.failed("label value not quoted")) }
                rest = rest.dropFirst()
                var value = ""
                while true {
                    guard let character = rest.first else { return .failure(.failed("unterminated label value")) }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\n" { return .failure(.failed("raw line feed in a label value")) }
                    if character == "\\" {
                        switch rest.first {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: return .failure(.failed("bad escape in a label value"))
                        }
                        rest = rest.dropFirst()
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else {
                    return .failure(.failed("label \(label) twice"))
                }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" {
                    return .failure(.failed("expected , or } after a label"))
                }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { return .failure(.failed("no space before the value")) }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        // A value, optionally a millisecond timestamp.
        guard (1...2).contains(fields.count), fields.count == 1 || Int64(fields[1]) != nil else {
            return .failure(.failed("expected a value and at most a timestamp"))
        }
        let text = String(fields[0])
        let value: Double
        switch text {
        case "NaN": value = .nan
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        default:
            guard let number = Double(text), number.isFinite,
                  text.allSatisfy({ "0123456789.eE+-".contains($0) }) else {
                return .failure(.failed("bad value \(text)"))
            }
            value = number
        }
        return .success((Series(name: name, labels: labels), value))
    }
}

extension Result where Failure == PrometheusExposition.ParseFailure {
    func get(orThrow make: (String) -> HTTPTestError) throws -> Success {
        switch self {
        case .success(let value): return value
        case .failure(.failed(let why)): throw make(why)
        }
    }
}
