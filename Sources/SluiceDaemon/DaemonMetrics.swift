import Logging
import ServiceLifecycle
import SluiceControl
import SluiceDataPath
import SluicePluginHost

extension Daemon {
    /// Binds the metrics endpoint when `[metrics] enabled = true`; a bind
    /// that fails (port taken, address not on this host) stops the start
    /// with an error naming the address.
    func metricsServices() async throws -> [ServiceGroupConfiguration.ServiceConfiguration] {
        let settings = config.metrics
        guard settings.enabled else { return [] }
        let server = try await MetricsServer.bind(settings.listen, logger: logger) { [weak self] in
            self?.metricsText() ?? ""
        }
        metricsEndpoint.set(server.address)
        return [.init(service: MetricsService(server: server))]
    }

    /// The exposition text. Every figure is a snapshot the data path keeps
    /// anyway (atomic loads, BPF map reads); NIC driver statistics are not
    /// read here, because an ioctl per scrape per NIC is not cheap. Blocking
    /// (takes the pipeline and plugin locks): call from the thread pool.
    func metricsText() -> String {
        var out = PrometheusText()
        let reports = pipelines.reports()
        Self.writePipelines(reports, to: &out)
        writeControl(to: &out)
        writeNIC(reports, to: &out)
        let plugins = self.plugins.list()
        out.family("sluice_plugins", .gauge, "Plugin files seen by the last scan, by outcome.", [
            .init([("status", "loaded")], plugins.filter { $0.status == .loaded }.count),
            .init([("status", "rejected")], plugins.filter { $0.status == .rejected }.count),
        ])
        out.family("sluice_uptime_seconds", .gauge, "Seconds since sluiced started.", [.init([], uptimeSeconds)])
        out.family("sluice_build_info", .gauge, "Always 1; the version is a label.", [
            .init([("version", ControlProtocol.sluiceVersion)], 1),
        ])
        return out.text
    }

    /// Per socket, per XDP queue, per pipeline and per module.
    static func writePipelines(_ reports: [PipelineReport], to out: inout PrometheusText) {
        typealias Socket = (iface: String, socket: SocketStatistics)
        let sockets: [Socket] = reports.flatMap { report in report.statistics.sockets.map { (report.interface, $0) } }
        func socketLabels(_ entry: Socket) -> [(String, String)] {
            [("iface", entry.iface), ("queue", String(entry.socket.queue)), ("channel", String(entry.socket.channel))]
        }
        let socketCounters: [(String, String, (SocketStatistics) -> UInt64)] = [
            ("sluice_rx_packets_total", "Packets received on the AF_XDP socket.", { $0.rxPackets }),
            ("sluice_rx_bytes_total", "Bytes received on the AF_XDP socket.", { $0.rxBytes }),
            ("sluice_kernel_dropped_total", "Packets the kernel dropped for this socket (XDP_STATISTICS rx_dropped).",
             { $0.kernel.rxDropped }),
            ("sluice_rx_ring_full_total", "Packets dropped because the RX ring was full (XDP_STATISTICS).",
             { $0.kernel.rxRingFull }),
            ("sluice_fill_ring_empty_total", "Times the kernel found the fill ring empty (XDP_STATISTICS).",
             { $0.kernel.fillRingEmpty }),
            ("sluice_handoff_dropped_total", "Packets dropped at the RX thread -> worker ring (full).",
             { $0.handoffDrops }),
            ("sluice_passed_total", "Packets the module chain passed.", { $0.passed }),
            ("sluice_dropped_total", "Packets the module chain dropped.", { $0.dropped }),
            ("sluice_transmitted_total", "Packets the module chain sent back out (AF_XDP TX).", { $0.transmitted }),
            ("sluice_transmit_failed_total", "Transmit verdicts the TX ring had no room for.", { $0.transmitFailed }),
            ("sluice_malformed_total", "Packets whose headers did not parse.", { $0.malformed }),
            ("sluice_busy_poll_kicks_total", "Busy-poll kicks (recvfrom) the RX thread made on an empty RX ring.",
             { $0.busyPollKicks ?? 0 }),
            ("sluice_poll_sleeps_total", "Times the RX thread slept in poll() (its wake-ups).", { $0.pollSleeps ?? 0 }),
            ("sluice_multi_buffer_packets_total", "Packets received as a chain of UMEM frames (XDP multi-buffer).",
             { $0.multiBufferPackets ?? 0 }),
            ("sluice_invalid_chains_total", "Multi-buffer chains refused (longer than 64 frames); their frames recycled.",
             { $0.invalidChains ?? 0 }),
        ]
        for (name, help, value) in socketCounters {
            out.family(name, .counter, help, sockets.map { .init(socketLabels($0), value($0.socket)) })
        }
        out.family("sluice_socket_zero_copy", .gauge, "1 when the socket runs in zero-copy mode, 0 in copy mode.",
                   sockets.map { .init(socketLabels($0), $0.socket.zeroCopy) })
        out.family("sluice_socket_busy_poll", .gauge, "1 when the RX thread busy-polls the socket, 0 when it sleeps in poll().",
                   sockets.map { .init(socketLabels($0), $0.socket.busyPoll ?? false) })
        out.family("sluice_socket_multi_buffer", .gauge,
                   "1 when the socket takes packets larger than a frame as chains (XDP_USE_SG), 0 when not.",
                   sockets.map { .init(socketLabels($0), $0.socket.multiBuffer ?? false) })

        typealias XDPQueue = (iface: String, queue: XDPQueueCounters)
        let queues: [XDPQueue] = reports.flatMap { report in report.statistics.xdp.map { (report.interface, $0) } }
        let xdpCounters: [(String, String, (XDPQueueCounters) -> UInt64)] = [
            ("sluice_xdp_redirected_total", "Packets Sluice's XDP program redirected to the queue's socket.",
             { $0.redirected }),
            ("sluice_xdp_passed_total", "Packets Sluice's XDP program passed to the kernel (prefilter, no socket).",
             { $0.passed }),
            ("sluice_xdp_redirect_failed_total", "Packets that matched but found no socket at the XSKMAP key.",
             { $0.redirectFailed }),
            ("sluice_xdp_rx_metadata_written_total", "Packets the XDP program stored the driver's RX metadata before.",
             { $0.metadataWritten ?? 0 }),
            ("sluice_xdp_rx_metadata_no_room_total", "Packets with no room for RX metadata (bpf_xdp_adjust_meta refused).",
             { $0.metadataNoRoom ?? 0 }),
            ("sluice_xdp_rx_timestamp_unsupported_total", "Packets whose driver does not provide an RX timestamp (EOPNOTSUPP).",
             { $0.timestampUnsupported ?? 0 }),
            ("sluice_xdp_rx_timestamp_absent_total", "Packets the driver had no RX timestamp for (ENODATA or 0).",
             { $0.timestampAbsent ?? 0 }),
            ("sluice_xdp_rx_hash_unsupported_total", "Packets whose driver does not provide an RX hash (EOPNOTSUPP).",
             { $0.hashUnsupported ?? 0 }),
            ("sluice_xdp_rx_hash_absent_total", "Packets the driver had no RX hash for (ENODATA).", { $0.hashAbsent ?? 0 }),
        ]
        for (name, help, value) in xdpCounters {
            out.family(name, .counter, help, queues.map {
                .init([("iface", $0.iface), ("queue", String($0.queue.queue))], value($0.queue))
            })
        }
        out.family("sluice_rx_metadata_in_use", .gauge,
                   "1 when the interface's XDP program stores the driver's RX metadata (timestamp, hash) for the modules.",
                   reports.map { .init([("iface", $0.interface)], $0.statistics.rxMetadata?.inUse ?? false) })
        out.family("sluice_pipeline_running", .gauge, "1 while the interface's pipeline runs, 0 once stopped.",
                   reports.map { .init([("iface", $0.interface)], $0.running) })
        writeModules(reports, to: &out)
    }

    /// Module counters are named by each module (`packets`, `files`, …), so
    /// they go into one family with the name as a label: a module's new
    /// counter needs no change here, and names cannot collide with Sluice's
    /// own families. `position` tells two modules of the same kind apart.
    /// Sizes (`flows`, `capacity`, `rules`) are gauges, not counters; so are
    /// the latency module's percentiles and maximum, which go into a family
    /// of their own in nanoseconds (they can fall, and summing or rating
    /// them as counters means nothing).
    static func writeModules(_ reports: [PipelineReport], to out: inout PrometheusText) {
        var counters: [PrometheusText.Sample] = []
        var gauges: [PrometheusText.Sample] = []
        var latencies: [PrometheusText.Sample] = []
        for report in reports {
            for (position, module) in report.modules.enumerated() {
                for (name, value) in module.counters.sorted(by: { $0.key < $1.key }) {
                    if module.kind == ModuleKind.latency.rawValue, let statistic = latencyStatistics[name] {
                        latencies.append(.init(
                            [("iface", report.interface), ("position", String(position)), ("statistic", statistic)],
                            value))
                        continue
                    }
                    let labels = [
                        ("iface", report.interface), ("position", String(position)), ("module", module.kind),
                        (moduleGaugeNames.contains(name) ? "gauge" : "counter", name),
                    ]
                    if moduleGaugeNames.contains(name) {
                        gauges.append(.init(labels, value))
                    } else {
                        counters.append(.init(labels, value))
                    }
                }
            }
        }
        out.family("sluice_module_counter_total", .counter,
                   "A module's counter, summed over the interface's sockets; the counter label names it.", counters)
        out.family("sluice_module_gauge", .gauge,
                   "A module's current size (flows in the table, its capacity, rules); the gauge label names it.",
                   gauges)
        out.family("sluice_latency_nanoseconds", .gauge,
                   "The latency module's receive latency percentiles (bucket upper bounds) and maximum since start, "
                       + "merged over the interface's sockets; the statistic label names it (p50, p90, p99, max).",
                   latencies)
    }

    static let moduleGaugeNames: Set<String> = ["flows", "capacity", "rules"]
    /// The latency module's levels, by snapshot key, with their `statistic` label.
    static let latencyStatistics: [String: String] = ["p50_ns": "p50", "p90_ns": "p90", "p99_ns": "p99", "max_ns": "max"]

    private func writeControl(to out: inout PrometheusText) {
        let control = server.statistics
        out.family("sluice_control_clients", .gauge, "Clients connected to the control socket.",
                   [.init([], control.clients)])
        out.family("sluice_control_connections_total", .counter, "Connections accepted on the control socket.",
                   [.init([], control.connectionsTotal)])
        out.family("sluice_control_connections_rejected_total", .counter,
                   "Connections closed at once because max_clients were connected.",
                   [.init([], control.connectionsRejectedBusy)])
        out.family("sluice_control_commands_total", .counter, "Commands answered on the control socket.",
                   [.init([], control.commandsServed)])
        out.family("sluice_control_errors_total", .counter, "Error replies on the control socket, by code.",
                   control.errorsByCode.sorted { $0.key < $1.key }.map { .init([("code", $0.key)], $0.value) })
    }

    /// Per interface that is configured or has journaled changes.
    private func writeNIC(_ reports: [PipelineReport], to out: inout PrometheusText) {
        let entries = nic.journalEntries
        let names = Set(config.interfaces.map(\.name) + entries.map(\.interface) + reports.map(\.interface)).sorted()
        out.family("sluice_nic_changes", .gauge, "NIC changes Sluice made and will restore (journal entries).",
                   names.map { name in .init([("iface", name)], entries.filter { $0.interface == name }.count) })
        out.family("sluice_nic_outside_changes", .gauge, "Values Sluice set that someone else changed since.",
                   names.map { .init([("iface", $0)], nic.outsideChanges($0).count) })
    }
}
