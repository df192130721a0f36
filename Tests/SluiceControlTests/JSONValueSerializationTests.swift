import Foundation
import SluiceTestSupport
import XCTest

@testable import SluiceControl

/// `JSONValue.serialized()` writes JSON itself (the Codable path was too slow
/// for 1,000 `stats.get` replies a second); `JSONEncoder` is the oracle.
final class JSONValueSerializationTests: XCTestCase {
    func testEdgeCasesMatchJSONEncoder() {
        let values: [JSONValue] = [
            .null, true, false, 0, -1, .int(.min), .int(.max), .uint(.max),
            1.0, 0.5, -0.0, 1e-7, 1e21, 1e16, 123456789.123, 0.1, 100.0, 12345678901234567.0, 2.5e-5, 1e300,
            "", "plain", "\u{01}\u{1f}\n\t\r\u{08}\u{0c}\"\\/é€😀\u{7f}", "</script>",
            [], [:], [[], [:], [nil]],
            ["b": 1, "B": 2, "a_b": 3, "aB": 4, "a": 5, "é": 6, "Z": 7, "10": 8, "9": 9, "": 10],
        ]
        for value in values {
            XCTAssertEqual(value.serialized(), value.serializedByJSONEncoder(), "\(value)")
        }
    }

    func testRandomDocumentsMatchJSONEncoder() {
        var random = SplitMix64(seed: 0x5EED_0007)
        for round in 0..<2_000 {
            let value = Self.randomValue(depth: 0, using: &random)
            let fast = value.serialized()
            XCTAssertEqual(fast, value.serializedByJSONEncoder(), "round \(round)")
            // And it is JSON (integral doubles come back as integers, so
            // the value itself is not compared).
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(fast.utf8), options: [.fragmentsAllowed]), fast)
        }
    }

    func testNonFiniteDoubleBecomesNullInsteadOfLosingTheDocument() {
        let value: JSONValue = ["rate": .double(.nan), "other": .double(.infinity), "kept": 1]
        XCTAssertEqual(value.serialized(), #"{"kept":1,"other":null,"rate":null}"#)
    }

    private static func randomValue(depth: Int, using random: inout SplitMix64) -> JSONValue {
        let kinds = depth >= 4 ? 6 : 8
        switch Int.random(in: 0..<kinds, using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2: return .int(Int64.random(in: .min ... .max, using: &random))
        case 3: return .uint(UInt64.random(in: UInt64(Int64.max) + 1 ... .max, using: &random))
        case 4:
            // Integers, short fractions and arbitrary bit patterns (finite ones).
            switch Int.random(in: 0..<3, using: &random) {
            case 0: return .double(Double(Int.random(in: -1_000_000...1_000_000, using: &random)))
            case 1: return .double(Double(Int.random(in: -100_000...100_000, using: &random)) / 1000)
            default:
                var bits = Double(bitPattern: UInt64.random(in: 0 ... .max, using: &random))
                if !bits.isFinite { bits = 0.25 }
                return .double(bits)
            }
        case 5: return .string(randomString(using: &random))
        case 6:
            return .array((0..<Int.random(in: 0...5, using: &random)).map { _ in
                randomValue(depth: depth + 1, using: &random)
            })
        default:
            var object: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...5, using: &random) {
                object[randomString(using: &random)] = randomValue(depth: depth + 1, using: &random)
            }
            return .object(object)
        }
    }

    private static func randomString(using random: inout SplitMix64) -> String {
        let alphabet: [Unicode.Scalar] = ["a", "B", "_", "0", "9", " ", "\"", "\\", "/", "\u{00}", "\u{01}", "\u{08}", "\u{09}",
                                          "\u{0A}", "\u{0C}", "\u{0D}", "\u{1F}", "\u{7F}", "é", "€", "😀", "\u{2028}"]
        var text = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...8, using: &random) {
            text.append(alphabet[Int.random(in: 0..<alphabet.count, using: &random)])
        }
        return String(text)
    }
}
