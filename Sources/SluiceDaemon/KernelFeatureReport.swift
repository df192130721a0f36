import Logging
import SluiceDataPath

/// The optional kernel features (KernelFeatures.swift) as the daemon reports
/// them: one log line each at start, and a section of `doctor`.
extension Daemon {
    /// Probes (once per process, off the event loops) and logs every feature.
    func reportKernelFeatures() async throws {
        let features = try await blocking { KernelFeatures.detected }
        for feature in features {
            logger.log(level: Self.logLevel(feature), "\(Self.logMessage(feature))", metadata: [
                "feature": "\(feature.name.rawValue)", "state": "\(feature.state.rawValue)",
            ])
        }
    }

    /// Found is routine; missing or unknown changes what Sluice does (a
    /// warning when no pipeline could start).
    static func logLevel(_ feature: KernelFeature) -> Logger.Level {
        switch feature.state {
        case .found: return .info
        case .missing, .unknown: return feature.name == .xdpLink ? .warning : .notice
        }
    }

    /// `kernel feature NAME: STATE (TITLE, Linux SINCE+): DETAIL`, and what
    /// Sluice does without it unless found.
    static func logMessage(_ feature: KernelFeature) -> String {
        let head = "kernel feature \(feature.name.rawValue): \(feature.state.rawValue) (\(feature.title), Linux \(feature.since)+): \(feature.detail)"
        switch feature.state {
        case .found: return head
        case .missing: return head + "; without it: " + feature.without
        case .unknown: return head + "; if missing: " + feature.without
        }
    }
}
