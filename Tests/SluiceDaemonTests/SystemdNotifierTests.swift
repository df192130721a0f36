import Foundation
import XCTest

@testable import SluiceDaemon

#if canImport(Glibc)
import Glibc
#endif

/// What sluiced makes of the environment systemd gives a Type=notify service.
/// (The datagrams themselves: IntegrationTests' SystemdNotifyTests.)
final class SystemdNotifierTests: XCTestCase {
    func testNoNotifySocketMeansNoNotifier() throws {
        XCTAssertNil(try SystemdNotifier.fromEnvironment([:]))
        XCTAssertNil(try SystemdNotifier.fromEnvironment(["NOTIFY_SOCKET": "", "WATCHDOG_USEC": "1000"]))
    }

    func testWatchdogIntervalIsHalfThePeriodForThisProcessOnly() throws {
        XCTAssertEqual(try SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "30000000"]), .seconds(15))
        XCTAssertEqual(
            try SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "\(getpid())"]),
            .milliseconds(100))
        XCTAssertNil(try SystemdNotifier.watchdogInterval(["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "\(getpid() + 1)"]))
        XCTAssertNil(try SystemdNotifier.watchdogInterval([:]))
        let notifier = try XCTUnwrap(SystemdNotifier.fromEnvironment([
            "NOTIFY_SOCKET": "@sluice-test", "WATCHDOG_USEC": "4000000",
        ]))
        XCTAssertEqual(notifier.watchdogInterval, .seconds(2))
    }

    func testBadWatchdogValuesAreErrorsNamingTheVariable() {
        for (key, value) in [
            ("WATCHDOG_USEC", "0"), ("WATCHDOG_USEC", "-5"), ("WATCHDOG_USEC", "30s"),
            ("WATCHDOG_USEC", "18446744073709551615"), ("WATCHDOG_PID", "init"),
        ] {
            var environment = ["WATCHDOG_USEC": "1000000"]
            environment[key] = value
            XCTAssertThrowsError(try SystemdNotifier.watchdogInterval(environment), "\(key)=\(value)") { error in
                XCTAssertTrue("\(error)".contains("\(key) '\(value)'"), "\(error)")
            }
        }
    }

    func testSocketAddressesAreCheckedAgainstSunPath() throws {
        XCTAssertThrowsError(try SystemdNotifier(destination: "run/notify")) { error in
            XCTAssertTrue("\(error)".contains("'run/notify' is neither an absolute path nor an abstract"), "\(error)")
        }
        // sun_path holds 108 bytes: 107 and a NUL for a path, 108 for an abstract name.
        XCTAssertNoThrow(try SystemdNotifier(destination: "/" + String(repeating: "a", count: 106)))
        XCTAssertThrowsError(try SystemdNotifier(destination: "/" + String(repeating: "a", count: 107))) { error in
            XCTAssertTrue("\(error)".contains("is 108 bytes; sun_path holds 107"), "\(error)")
        }
        XCTAssertNoThrow(try SystemdNotifier(destination: "@" + String(repeating: "a", count: 107)))
        XCTAssertThrowsError(try SystemdNotifier(destination: "@" + String(repeating: "a", count: 108)))
    }

    func testSendingToAMissingSocketThrowsTheErrno() throws {
        let notifier = try SystemdNotifier(destination: "/nonexistent-\(getpid())/notify")
        XCTAssertThrowsError(try notifier.send("READY=1")) { error in
            XCTAssertTrue("\(error)".contains("sendto(NOTIFY_SOCKET /nonexistent-"), "\(error)")
            XCTAssertTrue("\(error)".contains("No such file or directory"), "\(error)")
        }
    }
}
