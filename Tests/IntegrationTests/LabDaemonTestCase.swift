import Foundation
import SluiceTestSupport
import XCTest

/// A lab veth with 4 queues (or the lab a subclass's ``makeLab()`` makes), a
/// plugin directory holding the built plugins, and a daemon configured to use
/// it (not started: tests add plugins first or start at once). Everything is
/// removed in tearDown, also after a failure.
class LabDaemonTestCase: XCTestCase {
    var lab: Lab!
    var daemon: DaemonProcess!
    var plugins: PluginDirectory!

    /// The lab name prefix, so a leftover lab says which test made it.
    class var labPrefix: String { "slab" }

    /// The lab each test gets; a subclass may adopt other NICs instead.
    class func makeLab() throws -> Lab { try Lab.up(queues: 4, prefix: labPrefix) }

    override func setUpWithError() throws {
        try Privilege.require()
        lab = try Self.makeLab()
        plugins = try PluginDirectory.withShippedPlugins()
        daemon = try DaemonProcess(extraConfig: "[plugins]\ndir = \"\(plugins.path)\"\n")
    }

    override func tearDown() {
        daemon?.stop()
        try? lab?.down()
        plugins?.remove()
    }

    var app: String { lab.appInterface }
}
