import Synchronization

/// Turns cumulative counters into per-second rates for a stats stream.
///
/// Wherever the data has an object named `totals` whose values are integers,
/// a sibling `rates` object appears with each counter's increase per second
/// since the previous event of the same stream. One tracker per stream, so
/// subscribers with different intervals do not disturb each other.
public final class RateTracker: Sendable {
    private typealias Previous = [String: (values: [String: UInt64], at: ContinuousClock.Instant)]
    private let previous = Mutex<Previous>([:])

    public init() {}

    public func annotate(_ data: JSONValue, now: ContinuousClock.Instant = .now) -> JSONValue {
        previous.withLock { previous in
            var seen: Set<String> = []
            let result = Self.walk(data, path: "", now: now, seen: &seen, previous: &previous)
            previous = previous.filter { seen.contains($0.key) }
            return result
        }
    }

    private static func walk(
        _ value: JSONValue, path: String, now: ContinuousClock.Instant, seen: inout Set<String>, previous: inout Previous
    ) -> JSONValue {
        switch value {
        case .object(var object):
            for (key, child) in object where key != "totals" {
                object[key] = walk(child, path: path + "." + key, now: now, seen: &seen, previous: &previous)
            }
            if case .object(let totals)? = object["totals"] {
                let key = path + ".totals"
                seen.insert(key)
                let values = totals.compactMapValues { $0.integer(as: UInt64.self) }
                if let last = previous[key] {
                    let elapsed = now - last.at
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    if seconds > 0 {
                        var rates: [String: JSONValue] = [:]
                        for (name, current) in values {
                            let before = last.values[name] ?? 0
                            // A counter that went down was reset (pipeline restarted).
                            let delta = current >= before ? current - before : current
                            rates[name] = .double((Double(delta) / seconds * 10).rounded() / 10)
                        }
                        object["rates"] = .object(rates)
                    }
                }
                previous[key] = (values, now)
            }
            return .object(object)
        case .array(let items):
            return .array(items.enumerated().map { walk($1, path: "\(path)[\($0)]", now: now, seen: &seen, previous: &previous) })
        default:
            return value
        }
    }
}
