// TOMLKit (toml++) keeps no source positions on parsed values, so error
// messages that name a line need our own map from key path to line. This is
// a scanner, not a parser: it runs only on text toml++ has already accepted,
// so it skips values rather than checking them, but it must still never trap
// on arbitrary bytes (it is also fuzzed with garbage).

/// The line on which each key, table header and array-of-tables element of a
/// TOML document is first defined.
struct TOMLKeyIndex: Sendable {
    private(set) var lines: [[TOMLPathComponent]: Int] = [:]
    /// The first place where toml++ 3.4 would assert (abort in debug builds,
    /// undefined behaviour in release) instead of reporting a syntax error:
    /// a header like `[{a]`, an array element starting with `}`. Found by
    /// fuzzing; the text must not reach toml++ when this is set.
    private(set) var parserTrap: TOMLParserTrap?

    init(text: String) {
        var scanner = Scanner(bytes: Array(text.utf8))
        scanner.scanDocument()
        lines = scanner.lines
        parserTrap = scanner.parserTrap
    }

    /// The line where `path` was defined or, failing that, where its closest
    /// ancestor was (a key inside an implicitly created table, for instance).
    func line(of path: [TOMLPathComponent]) -> Int? {
        var path = path
        while !path.isEmpty {
            if let line = lines[path] { return line }
            path.removeLast()
        }
        return nil
    }
}

struct TOMLParserTrap: Equatable, Sendable {
    var line: Int
    /// In Unicode scalars from the start of the line, from 1 (as toml++ counts).
    var column: Int
    /// Where the offending scalar is in the document, in bytes.
    var bytes: Range<Int>
    var message: String
    /// A byte that, in place of the offending scalar, makes toml++ stop
    /// there with an ordinary syntax error (to learn whether it finds an
    /// earlier one).
    var defused: UInt8
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

private struct Scanner {
    let bytes: [UInt8]
    var position = 0
    var line = 1
    var lineStart = 0
    var parserTrap: TOMLParserTrap?
    var lines: [[TOMLPathComponent]: Int] = [:]
    /// Each array of tables → how many elements it has so far.
    var arrayOfTablesCounts: [[TOMLPathComponent]: Int] = [:]
    /// Inline arrays and tables nest; bound the depth so garbage cannot
    /// recurse the stack away.
    var depth = 0
    // Deeper than toml++ allows (TOML_MAX_NESTED_VALUES, 256), so every trap
    // toml++ could reach is found before the scanner gives up.
    static let maximumDepth = 300
    static let maximumRecordedDepth = 16
    static let maximumKeyDepth = 64

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark is allowed before the first key.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
    }

    var atEnd: Bool { position >= bytes.count }
    var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    func peek(_ offset: Int) -> UInt8? {
        let index = position + offset
        return index < bytes.count ? bytes[index] : nil
    }

    mutating func advance(_ count: Int = 1) {
        for _ in 0..<count {
            guard position < bytes.count else { return }
            position += 1
            if bytes[position - 1] == UInt8(ascii: "\n") {
                line += 1
                lineStart = position
            }
        }
    }

    mutating func record(_ path: [TOMLPathComponent], line: Int) {
        if lines[path] == nil { lines[path] = line }
    }

    /// Records every prefix too: `[a.b.c]` and `a.b.c = 1` define `a` and `a.b`.
    /// Only the first ``maximumRecordedDepth`` components: a 100 000-part
    /// dotted key must not cost 100 000² (deeper keys report their ancestor's line).
    mutating func recordWithAncestors(_ path: [TOMLPathComponent], line: Int) {
        for end in path.indices.prefix(Scanner.maximumRecordedDepth) { record(Array(path[...end]), line: line) }
    }

    // MARK: Document structure

    mutating func scanDocument() {
        var table: [TOMLPathComponent] = []
        while !atEnd {
            skipWhitespaceAndComments()
            guard let byte = current else { return }
            let start = position
            if byte == UInt8(ascii: "[") {
                table = scanHeader(enclosing: table)
            } else {
                scanKeyValue(prefix: table)
            }
            if position == start { advance() }  // garbage: never loop forever
        }
    }

    mutating func scanHeader(enclosing table: [TOMLPathComponent]) -> [TOMLPathComponent] {
        let headerLine = line
        let isArray = peek(1) == UInt8(ascii: "[")
        advance(isArray ? 2 : 1)
        skipWhitespace()
        if let byte = current, !TOMLPathComponent.isBareKeyByte(byte),
           byte != UInt8(ascii: "\""), byte != UInt8(ascii: "'"), byte != UInt8(ascii: "]") {
            noteTrap("a table header must start with a key name", defusedBy: UInt8(ascii: "]"))
        }
        let keyStart = mark
        let key = scanKey()
        skipWhitespace()
        if current == UInt8(ascii: "]") { advance(isArray ? 2 : 1) }
        skipToEndOfLine()
        guard !key.isEmpty else { return table }
        let path = resolveHeader(key, isArray: isArray)
        checkDepth(path, at: keyStart, defusedBy: UInt8(ascii: "]"))
        recordWithAncestors(path, line: headerLine)
        // An array of tables is also known by its unindexed name, so the
        // schema can name `[[interface]]` as a whole.
        if isArray { record(Array(path.dropLast()), line: headerLine) }
        return path
    }

    /// Turns `a.b` into `a[2].b` when `a` is an array of tables (a header
    /// refers to its last element), and appends a fresh element index for `[[...]]`.
    mutating func resolveHeader(_ key: [TOMLPathComponent], isArray: Bool) -> [TOMLPathComponent] {
        var resolved: [TOMLPathComponent] = []
        for (offset, component) in key.enumerated() {
            resolved.append(component)
            let name = resolved
            let isLast = offset == key.count - 1
            if isLast && isArray {
                let index = arrayOfTablesCounts[name, default: 0]
                arrayOfTablesCounts[name] = index + 1
                resolved.append(.element(index))
            } else if let count = arrayOfTablesCounts[name], count > 0 {
                resolved.append(.element(count - 1))
            }
        }
        return resolved
    }

    mutating func scanKeyValue(prefix: [TOMLPathComponent]) {
        let keyLine = line
        let keyStart = mark
        let key = scanKey()
        skipWhitespace()
        guard !key.isEmpty, current == UInt8(ascii: "=") else {
            skipToEndOfLine()
            return
        }
        advance()
        let path = prefix + key
        checkDepth(path, at: keyStart, defusedBy: UInt8(ascii: "="))
        recordWithAncestors(path, line: keyLine)
        skipWhitespace()
        scanValue(path: path)
    }

    // MARK: Keys

    /// A dotted key: `a`, `"a b".c`, `'lit' . d`. Empty when none is there.
    mutating func scanKey() -> [TOMLPathComponent] {
        var components: [TOMLPathComponent] = []
        while true {
            skipWhitespace()
            guard let byte = current else { break }
            if byte == UInt8(ascii: "\"") {
                advance()
                components.append(.key(scanBasicKeyBody()))
            } else if byte == UInt8(ascii: "'") {
                advance()
                components.append(.key(scanLiteralKeyBody()))
            } else if TOMLPathComponent.isBareKeyByte(byte) {
                let start = position
                while let b = current, TOMLPathComponent.isBareKeyByte(b) { advance() }
                components.append(.key(String(decoding: bytes[start..<position], as: UTF8.self)))
            } else {
                break
            }
            skipWhitespace()
            guard current == UInt8(ascii: ".") else { break }
            advance()
        }
        return components
    }

    mutating func scanBasicKeyBody() -> String {
        var out: [UInt8] = []
        while let byte = current, byte != UInt8(ascii: "\n") {
            advance()
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                out += scanEscape()
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func scanLiteralKeyBody() -> String {
        let start = position
        while let byte = current, byte != UInt8(ascii: "'"), byte != UInt8(ascii: "\n") { advance() }
        let body = String(decoding: bytes[start..<position], as: UTF8.self)
        if current == UInt8(ascii: "'") { advance() }
        return body
    }

    /// After a backslash in a basic string: the bytes the escape stands for.
    mutating func scanEscape() -> [UInt8] {
        guard let byte = current else { return [] }
        advance()
        switch byte {
        case UInt8(ascii: "b"): return [0x08]
        case UInt8(ascii: "t"): return [0x09]
        case UInt8(ascii: "n"): return [0x0A]
        case UInt8(ascii: "f"): return [0x0C]
        case UInt8(ascii: "r"): return [0x0D]
        case UInt8(ascii: "e"): return [0x1B]
        case UInt8(ascii: "x"): return scanHexScalar(digits: 2)
        case UInt8(ascii: "u"): return scanHexScalar(digits: 4)
        case UInt8(ascii: "U"): return scanHexScalar(digits: 8)
        default: return [byte]  // \" and \\ (and anything toml++ would have refused)
        }
    }

    mutating func scanHexScalar(digits: Int) -> [UInt8] {
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let byte = current, let digit = hexValue(byte) else { break }
            value = value &* 16 &+ digit
            advance()
        }
        guard let scalar = Unicode.Scalar(value) else { return [] }
        return Array(String(Character(scalar)).utf8)
    }

    func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    // MARK: Values

    /// Skips one value, recording the keys of inline tables (also inside arrays).
    mutating func scanValue(path: [TOMLPathComponent]) {
        guard let byte = current else { return }
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            skipString(quote: byte)
        case UInt8(ascii: "["):
            scanArray(path: path)
        case UInt8(ascii: "{"):
            scanInlineTable(path: path)
        default:
            if looksLikeDateWithTruncatedTime() || looksLikeDateWithTimeNotStartingWithADigit() {
                noteTrap("a date-time needs a time of the form HH:MM:SS", defusedBy: UInt8(ascii: "="))
            }
            // Numbers, booleans, dates: up to a delimiter.
            while let b = current, !isValueDelimiter(b) { advance() }
        }
    }

    /// `1979-05-27 0` followed by anything but a digit: toml++ 3.4 re-scans
    /// after the space for a time and asserts on the terminator. Never valid
    /// TOML (a time is HH:MM:SS), so flagging it only changes the message.
    func looksLikeDateWithTruncatedTime() -> Bool {
        // First bytes of the scalars, as toml++ counts scalars; underscores
        // do not count either.
        var characters: [UInt8] = []
        var index = position
        while index < bytes.count, characters.count <= 10 {
            let byte = bytes[index]
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || isValueDelimiter(byte) { break }
            if byte != UInt8(ascii: "_") && byte & 0xC0 != 0x80 { characters.append(byte) }
            index += 1
        }
        func isDigit(_ offset: Int) -> Bool {
            offset < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset])
        }
        return characters.count == 10
            && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(characters[0])
            && characters[4] == UInt8(ascii: "-") && characters[7] == UInt8(ascii: "-")
            && index + 2 < bytes.count && bytes[index] == UInt8(ascii: " ")
            && isDigit(index + 1) && !isDigit(index + 2)
    }

    /// `1979-05-27T` (or `t`) followed by anything but a digit: toml++ 3.4
    /// asserts that a time starts with a digit. Never valid TOML either.
    func looksLikeDateWithTimeNotStartingWithADigit() -> Bool {
        let digit = UInt8(ascii: "0")...UInt8(ascii: "9"), dash = UInt8(ascii: "-")
        let shape: [ClosedRange<UInt8>] = [digit, digit, digit, digit, dash...dash, digit, digit, dash...dash, digit, digit]
        guard position + shape.count + 1 < bytes.count else { return false }
        for (offset, allowed) in shape.enumerated() where !allowed.contains(bytes[position + offset]) {
            return false
        }
        let separator = bytes[position + shape.count]
        return (separator == UInt8(ascii: "T") || separator == UInt8(ascii: "t"))
            && !digit.contains(bytes[position + shape.count + 1])
    }

    func isValueDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "#"),
             UInt8(ascii: "\n"), UInt8(ascii: "\r"):
            return true
        default:
            return false
        }
    }

    mutating func scanArray(path: [TOMLPathComponent]) {
        scanItems(closing: UInt8(ascii: "]")) { scanner, index, expectsItem in
            // After a value toml++ wants a comma and says so; where it wants
            // a value it asserts instead.
            if expectsItem && scanner.startsWithValueTerminator() {
                scanner.noteTrap("expected a value or ']'", defusedBy: UInt8(ascii: ","))
            }
            scanner.scanValue(path: path + [.element(index)])
        }
    }

    mutating func scanInlineTable(path: [TOMLPathComponent]) {
        scanItems(closing: UInt8(ascii: "}")) { scanner, _, _ in
            let keyLine = scanner.line
            let keyStart = scanner.mark
            let key = scanner.scanKey()
            scanner.skipWhitespace()
            guard !key.isEmpty, scanner.current == UInt8(ascii: "=") else { return }
            scanner.advance()
            scanner.checkDepth(path + key, at: keyStart, defusedBy: UInt8(ascii: "="))
            scanner.recordWithAncestors(path + key, line: keyLine)
            scanner.skipWhitespace()
            scanner.scanValue(path: path + key)
        }
    }

    /// Walks the comma-separated items of an inline array or table, from the
    /// opening bracket past `closing`; `item` gets the item's index and
    /// whether an item may start here (after the bracket or a comma).
    mutating func scanItems(closing: UInt8, _ item: (inout Scanner, _ index: Int, _ expectsItem: Bool) -> Void) {
        advance()  // the opening bracket
        guard enterNesting() else { return }
        defer { depth -= 1 }
        var index = 0
        var expectsItem = true
        while true {
            skipWhitespaceAndComments()
            guard let byte = current else { return }
            if byte == closing {
                advance()
                return
            }
            if byte == UInt8(ascii: ",") {
                advance()
                index += 1
                expectsItem = true
                continue
            }
            let start = position
            item(&self, index, expectsItem)
            expectsItem = false
            if position == start { advance() }  // garbage: never loop forever
        }
    }

    /// A place in the text, to report a trap where its cause starts.
    struct Mark {
        var position: Int
        var line: Int
        var lineStart: Int
    }

    var mark: Mark { Mark(position: position, line: line, lineStart: lineStart) }

    mutating func noteTrap(_ message: String, defusedBy replacement: UInt8, at place: Mark? = nil) {
        let place = place ?? mark
        guard parserTrap == nil, place.position < bytes.count else { return }
        var end = place.position + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        // Continuation bytes (10xxxxxx) do not start a scalar.
        let scalars = bytes[place.lineStart..<place.position].lazy.filter { $0 & 0xC0 != 0x80 }.count
        parserTrap = TOMLParserTrap(
            line: place.line, column: scalars + 1, bytes: place.position..<end, message: message,
            defused: replacement)
    }

    /// toml++ recurses once per nested table when it finishes a document, so
    /// a key 200 000 parts deep overflows the stack. No configuration needs
    /// more than a few.
    mutating func checkDepth(_ path: [TOMLPathComponent], at keyStart: Mark, defusedBy replacement: UInt8) {
        guard path.count > Scanner.maximumKeyDepth else { return }
        noteTrap("keys may nest at most \(Scanner.maximumKeyDepth) deep", defusedBy: replacement, at: keyStart)
    }

    /// `}` and the Unicode line separators U+0085, U+2028, U+2029, which
    /// toml++ counts as value terminators but does not skip as whitespace.
    func startsWithValueTerminator() -> Bool {
        switch (current, peek(1), peek(2)) {
        case (UInt8(ascii: "}"), _, _), (0xC2, 0x85, _), (0xE2, 0x80, 0xA8), (0xE2, 0x80, 0xA9):
            return true
        default:
            return false
        }
    }

    mutating func enterNesting() -> Bool {
        guard depth < Scanner.maximumDepth else {
            position = bytes.count
            return false
        }
        depth += 1
        return true
    }

    /// Skips a basic or literal string, single- or multi-line. Multi-line
    /// strings may end in up to two extra quotes that belong to the content.
    mutating func skipString(quote: UInt8) {
        let isMultiline = peek(1) == quote && peek(2) == quote
        if isMultiline {
            advance(3)
            while let byte = current {
                if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    checkForEscapedNUL()
                    advance(2)
                    continue
                }
                if byte == quote && peek(1) == quote && peek(2) == quote {
                    var run = 0
                    while current == quote && run < 5 {
                        advance()
                        run += 1
                    }
                    return
                }
                advance()
            }
            return
        }
        advance()
        while let byte = current, byte != UInt8(ascii: "\n") {
            if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") { checkForEscapedNUL() }
            advance()
            if byte == quote { return }
            if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") && current != UInt8(ascii: "\n") {
                advance()
            }
        }
    }

    /// TOMLKit hands strings over as C strings, so `"/run/a\u0000b"` would
    /// silently become "/run/a": refuse the escape instead.
    mutating func checkForEscapedNUL() {
        for escape in ["\\u0000", "\\U00000000", "\\x00"] where bytes[position...].starts(with: escape.utf8) {
            noteTrap("strings may not contain NUL (\(escape))", defusedBy: 0x01)
        }
    }

    // MARK: Whitespace and comments

    mutating func skipWhitespace() {
        while let byte = current, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { advance() }
    }

    mutating func skipWhitespaceAndComments() {
        while let byte = current {
            switch byte {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"):
                advance()
            case UInt8(ascii: "#"):
                while let b = current, b != UInt8(ascii: "\n") { advance() }
            default:
                return
            }
        }
    }

    mutating func skipToEndOfLine() {
        while let byte = current, byte != UInt8(ascii: "\n") { advance() }
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
