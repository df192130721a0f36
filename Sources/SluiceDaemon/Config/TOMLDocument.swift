import CTOMLParser

/// A parsed TOML document (toml++ through CTOMLParser), each value with the
/// line and column where it starts, so that messages can name a line.
struct TOMLValue: Sendable {
    /// In the order of sluice_toml_type.
    enum Kind: UInt32, Sendable {
        case table, array, string, integer, float, boolean, date, time, dateTime
    }

    let kind: Kind
    let line: Int
    let column: Int
    private(set) var string: String?
    private(set) var int: Int?
    private(set) var bool: Bool?
    private(set) var array: [TOMLValue]?
    private(set) var table: TOMLTable?

    /// As messages name it: "got integer".
    var typeName: String {
        switch kind {
        case .float: return "floating-point number"
        case .dateTime: return "date-time"
        default: return "\(kind)"
        }
    }

    /// Keys may nest at most this deep (a 200 000-part dotted key is not a configuration).
    static let maximumDepth = 64

    /// Parses `text`; throws the first syntax error with its place.
    static func parse(_ text: String) throws(TOMLSyntaxError) -> TOMLValue {
        var error = sluice_toml_error()
        var text = text
        let document = text.withUTF8 { bytes in
            sluice_toml_parse(bytes.baseAddress, bytes.count, TOMLValue.maximumDepth, &error)
        }
        guard let document else {
            let message = withUnsafeBytes(of: error.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw TOMLSyntaxError(line: Int(error.line), column: Int(error.column), message: message)
        }
        defer { sluice_toml_free(document) }
        let nodes = UnsafeBufferPointer(start: sluice_toml_nodes(document), count: sluice_toml_node_count(document))
        var children = [[Int]](repeating: [], count: nodes.count)
        for (index, node) in nodes.enumerated() where node.parent >= 0 { children[Int(node.parent)].append(index) }
        // The shim bounds the depth, so this recursion is bounded too.
        func build(_ index: Int) throws(TOMLSyntaxError) -> TOMLValue {
            let node = nodes[index]
            var value = TOMLValue(kind: Kind(rawValue: node.type.rawValue)!, line: Int(node.line), column: Int(node.column))
            switch value.kind {
            case .string:
                let string = String(decoding: UnsafeRawBufferPointer(start: node.string, count: node.string_length), as: UTF8.self)
                if string.utf8.contains(0) { throw TOMLSyntaxError(escapedNULIn: text, at: value) }
                value.string = string
            case .integer: value.int = Int(node.integer)
            case .boolean: value.bool = node.integer != 0
            case .array: value.array = try children[index].map { (child) throws(TOMLSyntaxError) in try build(child) }
            case .table:
                var table = TOMLTable()
                for child in children[index] {
                    let key = String(decoding: UnsafeRawBufferPointer(start: nodes[child].key, count: nodes[child].key_length), as: UTF8.self)
                    table.append(key, try build(child))
                }
                value.table = table
            default: break
            }
            return value
        }
        return try build(0)
    }

    /// The line of the value at `path` or, failing that, of its closest ancestor.
    func line(of path: [TOMLPathComponent]) -> Int? {
        var value = self, line: Int?
        for component in path {
            let next: TOMLValue?
            switch component {
            case .key(let key): next = value.table?[key]
            case .element(let index): next = value.array.flatMap { $0.indices.contains(index) ? $0[index] : nil }
            }
            guard let next else { break }
            value = next
            line = next.line
        }
        return line
    }
}

/// A table's keys in the order toml++ keeps them, and their values.
struct TOMLTable: Sendable {
    private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]

    subscript(key: String) -> TOMLValue? { values[key] }

    fileprivate mutating func append(_ key: String, _ value: TOMLValue) {
        keys.append(key)
        values[key] = value
    }
}

struct TOMLSyntaxError: Error {
    var line: Int
    /// In Unicode scalars from the start of the line, from 1.
    var column: Int
    var message: String
}

extension TOMLSyntaxError {
    /// Config strings become C strings (paths, group names), where a NUL
    /// would silently cut them short: refuse the escape that made one, where it is.
    init(escapedNULIn text: String, at string: TOMLValue) {
        var line = 1, column = 1
        func advance(_ scalar: Unicode.Scalar) {
            if scalar == "\n" { (line, column) = (line + 1, 1) } else { column += 1 }
        }
        var scalars = text.unicodeScalars[...]
        while (line, column) < (string.line, string.column), let scalar = scalars.popFirst() { advance(scalar) }
        while let scalar = scalars.popFirst() {
            if scalar == "\\" {
                if let escape = ["u0000", "U00000000", "x00"].first(where: { scalars.starts(with: $0.unicodeScalars) }) {
                    self.init(line: line, column: column, message: "strings may not contain NUL (\\\(escape))")
                    return
                }
                // What a backslash escapes (another backslash too) starts no escape.
                advance(scalar)
                guard let escaped = scalars.popFirst() else { break }
                advance(escaped)
                continue
            }
            advance(scalar)
        }
        self.init(line: string.line, column: string.column, message: "strings may not contain NUL")
    }
}

/// A step in a key path: a key, or an element of an array (of tables).
enum TOMLPathComponent: Hashable, Sendable, ExpressibleByStringLiteral {
    case key(String)
    case element(Int)

    init(stringLiteral key: String) { self = .key(key) }

    /// Renders a path the way error messages show it: `control.max_clients`,
    /// `interface[1].name`, quoted where a key is not bare (`a."b.c"`).
    static func render(_ path: [TOMLPathComponent]) -> String {
        var out = ""
        for component in path {
            switch component {
            case .element(let index):
                out += "[\(index)]"
            case .key(let key):
                if !out.isEmpty { out += "." }
                out += isBare(key) ? key : TOMLSyntax.quoted(key)
            }
        }
        return out
    }

    static func isBare(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy(isBareKeyByte)
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

enum TOMLSyntax {
    /// A TOML basic string, so messages show keys and values as a file would.
    static func quoted(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
