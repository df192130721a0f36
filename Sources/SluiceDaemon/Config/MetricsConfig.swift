#if canImport(Glibc)
import Glibc
#endif

extension SluiceConfig {
    /// `[metrics]`: the Prometheus endpoint. Off in the package config; on
    /// in the lab config.
    public struct Metrics: Equatable, Sendable {
        public var enabled = false
        public var listen = MetricsListenAddress(host: "127.0.0.1", port: 9477)
        /// Metrics name interfaces and traffic volumes: serving them beyond
        /// this host is a decision the operator makes explicitly.
        public var allowRemote = false
    }
}

/// `host:port` or `[IPv6]:port`, with a numeric address (no name look-ups:
/// "localhost" could resolve to a non-loopback address). Port 0 lets the
/// kernel pick one; `status` reports the bound port.
public struct MetricsListenAddress: Equatable, Sendable, CustomStringConvertible {
    /// The address without brackets, as `inet_pton` reads it.
    public var host: String
    public var port: Int

    /// `[::1]:9477` is 11 bytes; the longest IPv6 text plus port is 53.
    public static let maximumBytes = 64

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var isIPv6: Bool { host.contains(":") }

    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// 127.0.0.0/8, ::1, and IPv4-mapped 127.x (::ffff:127.0.0.1).
    public var isLoopback: Bool {
        if isIPv6 {
            var address = in6_addr()
            guard inet_pton(AF_INET6, host, &address) == 1 else { return false }
            let bytes = withUnsafeBytes(of: address) { Array($0) }
            if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
            return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
        }
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else { return false }
        return withUnsafeBytes(of: address) { $0[0] } == 127
    }

    /// Checks the syntax and the address; says what is wrong in words.
    public static func parse(_ text: String) -> Result<MetricsListenAddress, ConfigValueRejected> {
        func reject(_ why: String) -> Result<MetricsListenAddress, ConfigValueRejected> {
            .failure(ConfigValueRejected("\(TOMLSyntax.quoted(text)) \(why)"))
        }
        guard text.utf8.count <= maximumBytes else {
            return .failure(ConfigValueRejected("the address is \(text.utf8.count) bytes long; at most \(maximumBytes)"))
        }
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return reject("has no ']' after the IPv6 address") }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return reject("needs :PORT after the ']'") }
            portText = rest.dropFirst()
            guard host.contains(":"), isAddress(host, family: AF_INET6) else {
                return reject("is not an IPv6 address in brackets, like [::1]:9477")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return reject("is not HOST:PORT, like 127.0.0.1:9477") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return reject("is an IPv6 address without brackets; write it like [::1]:9477") }
            guard isAddress(host, family: AF_INET) else {
                return reject("does not start with a numeric IP address (like 127.0.0.1 or [::1]); names are not looked up")
            }
        }
        guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ (48...57).contains($0) }),
              let port = Int(portText), (0...65535).contains(port)
        else {
            return reject("has no port in 0...65535 after the address")
        }
        return .success(MetricsListenAddress(host: String(host), port: port))
    }

    private static func isAddress(_ host: Substring, family: Int32) -> Bool {
        guard !host.isEmpty, !host.utf8.contains(0) else { return false }
        var buffer = in6_addr()
        return inet_pton(family, String(host), &buffer) == 1
    }
}

extension SluiceConfig {
    /// The `[metrics]` keys. `allow_remote` comes before `listen` so that
    /// the address check sees it, wherever the file writes the two.
    static let metricsKeys: [ConfigKey<SluiceConfig>] = [
        .boolean("enabled", \.metrics.enabled, doc: "Serve Prometheus metrics over HTTP at /metrics."),
        .boolean("allow_remote", \.metrics.allowRemote,
                 doc: "Allow a listen address other than loopback (metrics then leave this host)."),
        ConfigKey(
            name: "listen", allowed: "IPv4:port or [IPv6]:port, port 0...65535 (0 = any free port)",
            doc: "Address of the metrics endpoint; loopback only unless allow_remote = true.",
            defaultText: TOMLSyntax.quoted(SluiceConfig.defaults.metrics.listen.description)
        ) { value, config in
            guard let value else { return nil }
            guard let text = value.string else { return ConfigText.mismatch(expected: "a string", got: value) }
            switch MetricsListenAddress.parse(text) {
            case .failure(let rejection):
                return rejection.message
            case .success(let address):
                if !address.isLoopback && !config.metrics.allowRemote {
                    return "\(TOMLSyntax.quoted(text)) is not a loopback address;"
                        + " set allow_remote = true in [metrics] to serve metrics to other hosts"
                }
                config.metrics.listen = address
                return nil
            }
        },
    ]
}
