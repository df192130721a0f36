import SluiceTestSupport
import XCTest

@testable import SluiceDaemon

/// `[metrics]`: defaults, addresses, the loopback rule and line-precise errors.
final class MetricsConfigTests: XCTestCase {
    /// The keys go into `[metrics]` after a `[control]` table that needs no
    /// group look-up, so the first key is on line 4.
    private func metrics(_ keys: String) throws -> SluiceConfig {
        try SluiceConfig.parse(text: "[control]\nsocket_group = \"\"\n[metrics]\n" + keys, file: "test.toml")
    }

    /// Each error as `file:line: key: message`.
    private func rejected(_ keys: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        configErrors("[control]\nsocket_group = \"\"\n[metrics]\n" + keys, file: file, line: line).map(\.description)
    }

    func testDefaultsAreOffOnLoopback() throws {
        let defaults = SluiceConfig.defaults.metrics
        XCTAssertFalse(defaults.enabled)
        XCTAssertFalse(defaults.allowRemote)
        XCTAssertEqual(defaults.listen.description, "127.0.0.1:9477")
        XCTAssertEqual(try metrics("").metrics, defaults)
    }

    func testValidAddresses() throws {
        let cases: [(String, String, Int, Bool)] = [
            ("127.0.0.1:9477", "127.0.0.1", 9477, false),
            ("127.1.2.3:0", "127.1.2.3", 0, false),
            ("[::1]:9477", "::1", 9477, true),
            ("[::ffff:127.0.0.1]:65535", "::ffff:127.0.0.1", 65535, true),
        ]
        for (text, host, port, isIPv6) in cases {
            let config = try metrics("enabled = true\nlisten = \"\(text)\"\n")
            XCTAssertTrue(config.metrics.enabled)
            XCTAssertEqual(config.metrics.listen, MetricsListenAddress(host: host, port: port), text)
            XCTAssertEqual(config.metrics.listen.isIPv6, isIPv6, text)
            XCTAssertTrue(config.metrics.listen.isLoopback, text)
            XCTAssertEqual(config.metrics.listen.description, text)
        }
    }

    func testNonLoopbackNeedsAllowRemoteWhereverItIsWritten() throws {
        XCTAssertEqual(rejected("enabled = true\nlisten = \"0.0.0.0:9477\"\n"), [
            "test.toml:5: metrics.listen: \"0.0.0.0:9477\" is not a loopback address;"
                + " set allow_remote = true in [metrics] to serve metrics to other hosts",
        ])
        XCTAssertEqual(rejected("listen = \"[2001:db8::1]:9477\"\nallow_remote = false\n"), [
            "test.toml:4: metrics.listen: \"[2001:db8::1]:9477\" is not a loopback address;"
                + " set allow_remote = true in [metrics] to serve metrics to other hosts",
        ])
        // allow_remote after listen in the file still counts.
        let config = try metrics("listen = \"192.0.2.7:9100\"\nallow_remote = true\n")
        XCTAssertEqual(config.metrics.listen, MetricsListenAddress(host: "192.0.2.7", port: 9100))
        XCTAssertFalse(config.metrics.listen.isLoopback)
        XCTAssertTrue(try metrics("allow_remote = true\nlisten = \"[::]:9477\"\n").metrics.allowRemote)
    }

    func testBadAddressesNameTheProblemAndLine() {
        let cases: [(String, String)] = [
            ("localhost:9477", "does not start with a numeric IP address (like 127.0.0.1 or [::1]); names are not looked up"),
            ("127.0.0.1", "is not HOST:PORT, like 127.0.0.1:9477"),
            ("127.0.0.1:", "has no port in 0...65535 after the address"),
            ("127.0.0.1:65536", "has no port in 0...65535 after the address"),
            ("127.0.0.1:+80", "has no port in 0...65535 after the address"),
            ("127.0.0.1:0009477", "has no port in 0...65535 after the address"),
            ("::1:9477", "is an IPv6 address without brackets; write it like [::1]:9477"),
            ("[::1:9477", "has no ']' after the IPv6 address"),
            ("[::1]9477", "needs :PORT after the ']'"),
            ("[127.0.0.1]:9477", "is not an IPv6 address in brackets, like [::1]:9477"),
            ("256.0.0.1:80", "does not start with a numeric IP address (like 127.0.0.1 or [::1]); names are not looked up"),
            (":9477", "does not start with a numeric IP address (like 127.0.0.1 or [::1]); names are not looked up"),
        ]
        for (text, why) in cases {
            XCTAssertEqual(rejected("enabled = false\nlisten = \"\(text)\"\n"),
                           ["test.toml:5: metrics.listen: \"\(text)\" \(why)"], text)
        }
        let long = "127.0.0.1:" + String(repeating: "9", count: 60)
        XCTAssertEqual(rejected("listen = \"\(long)\"\n"),
                       ["test.toml:4: metrics.listen: the address is 70 bytes long; at most 64"])
    }

    func testWrongTypesAndUnknownKeys() {
        XCTAssertEqual(rejected("""
            enabled = "yes"
            listen = 9477
            allow_remote = 1
            port = 9477
            """), [
                "test.toml:4: metrics.enabled: expected true or false, got string",
                "test.toml:5: metrics.listen: expected a string, got integer",
                "test.toml:6: metrics.allow_remote: expected true or false, got integer",
                "test.toml:7: metrics.port: unknown key; [metrics] has enabled, allow_remote, listen",
            ])
    }

    func testShippedFilesMetricsSettings() throws {
        let lab = try SluiceConfig.load(path: repositoryRoot.appendingPathComponent("etc/sluice-lab.toml").path)
        XCTAssertTrue(lab.metrics.enabled)
        XCTAssertEqual(lab.metrics.listen.description, "127.0.0.1:9477")
        XCTAssertFalse(lab.metrics.allowRemote)
        // The package default (etc/sluice.toml) is checked key by key by
        // ConfigFileTests: every key present, at its default (off).
    }

    func testReloadSaysMetricsWaitForARestart() throws {
        let old = try metrics("")
        let new = try metrics("enabled = true\n")
        let outcome = ReloadOutcome(old: old, new: new)
        XCTAssertEqual(outcome.changed, ["metrics"])
        XCTAssertEqual(outcome.needsRestart, ["metrics"])
    }

    func testLabelValuesAndHelpAreEscaped() {
        XCTAssertEqual(PrometheusText.escapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd")
        XCTAssertEqual(PrometheusText.escapeHelp("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"")
        var text = PrometheusText()
        text.family("sluice_test_total", .counter, "Help.", [.init([("iface", "e\"1")], UInt64(3))])
        XCTAssertEqual(text.text, "# HELP sluice_test_total Help.\n# TYPE sluice_test_total counter\nsluice_test_total{iface=\"e\\\"1\"} 3\n")
    }
}
