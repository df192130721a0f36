import Foundation
import SluiceNIC
import SluiceTestSupport
import XCTest

/// features.set reads the features back: what was requested and what the
/// driver put into effect, checked against `ethtool -k`. A request the
/// driver did not carry out is an error, never a quiet success.
final class FeatureOutcomeTests: VethTestCase {
    var stateDirectory: String!
    var controller: NICController!

    override func setUpWithError() throws {
        try super.setUpWithError()
        stateDirectory = NSTemporaryDirectory() + uniqueName("sluice-state")
        controller = try NICController(stateDirectory: stateDirectory)
    }

    override func tearDown() {
        _ = controller?.restoreAll()
        controller = nil
        super.tearDown()
        if let stateDirectory { try? FileManager.default.removeItem(atPath: stateDirectory) }
    }

    /// `ethtool -k` lines by kernel or display name: "off [requested on]", "off [fixed]".
    func ethtoolLine(_ name: String) throws -> String? {
        for line in try lab.ethtool("-k", lab.device).split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == name { return parts[1] }
        }
        return nil
    }

    func notApplied(_ body: () throws -> FeaturesSetResult) -> FeaturesSetResult? {
        do {
            let result = try body()
            XCTFail("expected featuresNotApplied, got success: \(result.outcomes.map(\.message))")
        } catch NICError.featuresNotApplied(let result) {
            return result
        } catch {
            XCTFail("expected featuresNotApplied, got \(error)")
        }
        return nil
    }

    func testAFixedFeatureIsReportedAndTheChangeableOneStillApplied() throws {
        let groBefore = try XCTUnwrap(lab.ethtoolFeatures()["generic-receive-offload"])
        XCTAssertEqual(try ethtoolLine("ntuple-filters"), "off [fixed]", "veth cannot change ntuple")

        let result = try XCTUnwrap(notApplied { try controller.setFeatures(lab.device, ["ntuple": true, "gro": !groBefore]) })
        let shown = try lab.ethtoolFeatures()
        XCTAssertEqual(shown["generic-receive-offload"], !groBefore, "gro was changed, as ethtool -K would")
        XCTAssertEqual(shown["ntuple-filters"], false)
        XCTAssertEqual(result.outcomes, [
            FeatureOutcome(name: "rx-gro", requestedAs: "gro", requested: !groBefore, active: !groBefore, fixed: false,
                           message: "requested gro (rx-gro) \(!groBefore ? "on" : "off"); it is \(!groBefore ? "on" : "off")"),
            FeatureOutcome(name: "rx-ntuple-filter", requestedAs: "ntuple", requested: true, active: false, fixed: true,
                           message: "requested ntuple (rx-ntuple-filter) on; it is fixed off on \(lab.device) ([fixed] in ethtool -k)"),
        ])
        XCTAssertEqual(result.notApplied.map(\.name), ["rx-ntuple-filter"])
        XCTAssertEqual(result.value["rx-gro"]?.active, shown["generic-receive-offload"])
        let error = NICError.featuresNotApplied(result)
        XCTAssertEqual(error.code, "unsupported")
        XCTAssertEqual(error.description,
                       "not every feature change took effect on \(lab.device): requested ntuple (rx-ntuple-filter) on; "
                       + "it is fixed off on \(lab.device) ([fixed] in ethtool -k). In effect: rx-gro \(!groBefore ? "on" : "off")")
        XCTAssertEqual(controller.journalEntries.count, 1, "the gro change is journaled for restore")
        XCTAssertEqual(controller.restoreAll().failures, [])
        XCTAssertEqual(try lab.ethtoolFeatures()["generic-receive-offload"], groBefore)
    }

    func testAFeatureTheDriverLeavesOffIsAnErrorSayingSo() throws {
        // TSO needs scatter-gather: with sg off the core drops every TSO
        // feature, yet takes the request without an error.
        _ = try controller.setFeatures(lab.device, ["tso": false])
        let sg = try controller.setFeatures(lab.device, ["sg": false])
        XCTAssertEqual(Set(sg.outcomes.map(\.name)), ["tx-scatter-gather", "tx-scatter-gather-fraglist"])
        XCTAssertTrue(sg.outcomes.allSatisfy(\.applied))

        let result = try XCTUnwrap(notApplied { try controller.setFeatures(lab.device, ["tx-tcp-segmentation": true]) })
        XCTAssertEqual(try ethtoolLine("tx-tcp-segmentation"), "off [requested on]", "ethtool -k agrees")
        XCTAssertEqual(result.outcomes, [
            FeatureOutcome(name: "tx-tcp-segmentation", requestedAs: "tx-tcp-segmentation", requested: true, active: false,
                           fixed: false, message: "requested tx-tcp-segmentation on; the driver left it off"),
        ])
        XCTAssertEqual(result.value["tx-tcp-segmentation"]?.requested, true, "the kernel keeps the wish")
        XCTAssertEqual(result.value["tx-tcp-segmentation"]?.active, false)

        XCTAssertEqual(controller.restoreAll().failures, [])
        XCTAssertEqual(try ethtoolLine("tx-tcp-segmentation"), "on")
        XCTAssertEqual(try ethtoolLine("scatter-gather"), "on")
    }

    func testAnAppliedChangeReportsEachFeatureAsEthtoolShowsIt() throws {
        let groBefore = try XCTUnwrap(lab.ethtoolFeatures()["generic-receive-offload"])
        let result = try controller.setFeatures(lab.device, ["generic-receive-offload": !groBefore])
        XCTAssertEqual(result.outcomes.map(\.name), ["rx-gro"])
        XCTAssertEqual(result.outcomes.first?.requestedAs, "generic-receive-offload")
        XCTAssertEqual(result.outcomes.first?.active, try lab.ethtoolFeatures()["generic-receive-offload"])
        XCTAssertEqual(result.outcomes.first?.applied, true)
        XCTAssertEqual(result.notApplied, [])

        // A group leaves its fixed members out, as ethtool -K does: veth's
        // tx-checksum-ipv4/-ipv6/-fcoe-crc stay off [fixed] under "tx on".
        let tx = try controller.setFeatures(lab.device, ["tx": true])
        XCTAssertEqual(Set(tx.outcomes.map(\.name)), ["tx-checksum-ip-generic", "tx-checksum-sctp"])
        XCTAssertEqual(try ethtoolLine("tx-checksum-ipv4"), "off [fixed]")

        // Fixed, and already as asked: nothing to do, and that is success.
        let ntupleOff = try controller.setFeatures(lab.device, ["ntuple": false])
        XCTAssertEqual(ntupleOff.outcomes.map(\.fixed), [true])
        XCTAssertEqual(ntupleOff.outcomes.map(\.applied), [true])
    }

    func testTheWireShapeOnlyAddsFields() throws {
        let groBefore = try XCTUnwrap(lab.ethtoolFeatures()["generic-receive-offload"])
        let result = try controller.setFeatures(lab.device, ["gro": !groBefore])
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: encoder.encode(result)) as? [String: Any])
        let served = try XCTUnwrap(JSONSerialization.jsonObject(
            with: encoder.encode(controller.features(lab.device))) as? [String: Any])
        XCTAssertTrue(Set(served.keys).isSubset(of: Set(object.keys)), "\(object.keys) keeps \(served.keys)")
        XCTAssertEqual(Set(object.keys), ["value", "backend", "interface", "outcomes"])
        let outcome = try XCTUnwrap((object["outcomes"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(outcome.keys), ["name", "requested_as", "requested", "active", "fixed", "applied", "message"])
    }
}
