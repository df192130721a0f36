import SluiceProtocol

extension DriverStatistics {
    /// Groups the per-queue counters by the names drivers give them.
    public init(counters: [DriverCounter]) {
        var grouped: [String: QueueCounters] = [:]
        var order: [String] = []
        for counter in counters {
            guard let (direction, queue, field) = Self.queueCounterName(counter.name) else { continue }
            let key = "\(direction.rawValue)\(queue)"
            if grouped[key] == nil {
                grouped[key] = QueueCounters(direction: direction, queue: queue, counters: [:])
                order.append(key)
            }
            grouped[key]!.counters[field, default: 0] &+= counter.value
        }
        self.init(counters: counters, queues: order.compactMap { grouped[$0] }.sorted {
            ($0.direction.rawValue, $0.queue) < ($1.direction.rawValue, $1.queue)
        })
    }

    /// Splits per-queue counter names of the shapes drivers use:
    /// `rx_queue_N_x` (veth, virtio, ixgbe, ice), `rx-N.x` (i40e),
    /// `rxq_N_x` / `rxqN_x`, `rxN_x` (mlx5). nil for anything else.
    public static func queueCounterName(_ name: String) -> (QueueDirection, UInt32, String)? {
        let direction: QueueDirection
        if name.hasPrefix("rx") { direction = .rx } else if name.hasPrefix("tx") { direction = .tx } else { return nil }
        let rest = name.dropFirst(2)
        for separator in ["_queue_", "-", "q_", "q", "_", ""] where rest.hasPrefix(separator) {
            let afterSeparator = rest.dropFirst(separator.count)
            let digits = afterSeparator.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 9, let queue = UInt32(digits) else { continue }
            let tail = afterSeparator.dropFirst(digits.count)
            guard let first = tail.first, first == "_" || first == ".", tail.count > 1 else { continue }
            return (direction, queue, String(tail.dropFirst()))
        }
        return nil
    }
}
