#if canImport(Glibc)
import Glibc
#endif
import SluiceSystem
import SystemPackage

extension SluiceConfig {
    /// A configuration file is a few KiB; anything this big is a mistake.
    public static let maximumFileBytes = 1 << 20

    /// Reads, parses and validates `path`. Blocking (file I/O and group
    /// look-ups through NSS): call it from a thread that may block.
    public static func load(path: String) throws(ConfigErrors) -> SluiceConfig {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch let error as ConfigError {
            throw ConfigErrors([error])
        } catch {
            throw ConfigErrors([ConfigError(file: path, message: "cannot read: \(error)")])
        }
        // Check line by line so a bad byte is reported where it is.
        var lineNumber = 0
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if String(validating: line, as: UTF8.self) == nil {
                throw ConfigErrors([ConfigError(
                    file: path, line: lineNumber, message: "syntax error: the line is not valid UTF-8")])
            }
        }
        return try parse(text: String(decoding: bytes, as: UTF8.self), file: path)
    }

    /// Parses and validates a configuration held in memory; `file` names it
    /// in errors. Reports every mistake it finds, not just the first.
    /// Blocking when the text names groups (NSS look-ups).
    public static func parse(text: String, file: String) throws(ConfigErrors) -> SluiceConfig {
        // Named plainly (toml++ would say "unexpected control character").
        if let nul = position(ofFirst: 0, in: text) {
            throw ConfigErrors([ConfigError(
                file: file, line: nul.line, column: nul.column, message: "syntax error: NUL character")])
        }
        let document: TOMLValue
        do {
            document = try TOMLValue.parse(text)
        } catch {
            throw ConfigErrors([ConfigError(
                file: file, line: error.line, column: error.column, message: "syntax error: \(error.message)")])
        }
        var validation = Validation(file: file, document: document)
        let config = validation.decode()
        if !validation.errors.isEmpty { throw ConfigErrors(validation.errors) }
        return config
    }

    private static func position(ofFirst byte: UInt8, in text: String) -> (line: Int, column: Int)? {
        var line = 1, column = 1
        for scalar in text.unicodeScalars {
            if scalar.value == UInt32(byte) { return (line, column) }
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return nil
    }

    private static func readFile(_ path: String) throws -> [UInt8] {
        func failure(_ what: String, _ error: Errno) -> ConfigError {
            ConfigError(file: path, message: "cannot \(what): \(error) (errno \(error.rawValue))")
        }
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { throw failure("open", currentErrno) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure("stat", currentErrno) }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw ConfigError(file: path, message: "not a regular file")
        }
        guard status.st_size <= maximumFileBytes else {
            throw ConfigError(file: path, message: "larger than \(maximumFileBytes) bytes; is this the right file?")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count: Int
            do {
                count = try chunk.withUnsafeMutableBytes { buffer in
                    try retryingEINTR("read") { read(fd, buffer.baseAddress, buffer.count) }
                }
            } catch let error as SystemCallError {
                throw failure("read", error.errno)
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
            // The file may grow between fstat and read.
            guard bytes.count <= maximumFileBytes else {
                throw ConfigError(file: path, message: "larger than \(maximumFileBytes) bytes; is this the right file?")
            }
        }
    }
}

/// Walks the parsed document against ``SluiceConfig/schema``, collecting
/// every mistake with the line of the value it is about.
struct Validation {
    let file: String
    let document: TOMLValue
    var errors: [ConfigError] = []

    init(file: String, document: TOMLValue) {
        self.file = file
        self.document = document
    }

    mutating func decode() -> SluiceConfig {
        let root = document.table ?? TOMLTable()
        let schema = SluiceConfig.schema
        var config = SluiceConfig()

        for name in root.keys
        where !schema.contains(where: { $0.name == name }) && !SluiceConfig.tableArrays.contains(name) {
            let value = root[name]
            let what = isTableLike(value) ? "unknown table" : "unknown key"
            report([.key(name)], what + suggestion(forTopLevel: name, isTable: isTableLike(value)))
        }

        for section in schema {
            var table: TOMLTable?
            if let value = root[section.name] {
                if let sectionTable = value.table {
                    table = sectionTable
                } else {
                    report([.key(section.name)], ConfigText.mismatch(expected: "a table", got: value))
                }
            }
            for name in table?.keys ?? [] where section.key(named: name) == nil && !section.tableArrays.contains(name) {
                let value = table?[name]
                let what = isTableLike(value) ? "unknown table" : "unknown key"
                report([.key(section.name), .key(name)], what + suggestion(for: name, in: section))
            }
            for key in section.keys {
                let value = table?[key.name]
                guard let message = key.apply(value, &config) else { continue }
                let path: [TOMLPathComponent] = [.key(section.name), .key(key.name)]
                if value == nil {
                    // A default that does not fit this machine: no line to point at.
                    errors.append(ConfigError(
                        file: file, key: TOMLPathComponent.render(path),
                        message: message + " (the default; set \(key.name) in [\(section.name)] to change it)"))
                } else {
                    report(path, message)
                }
            }
        }
        config.interfaces = decodeInterfaces(root["interface"])
        config.pipeline.modules = decodeModules(root["pipeline"]?.table?["modules"])
        return config
    }

    mutating func report(_ path: [TOMLPathComponent], _ message: String) {
        errors.append(ConfigError(
            file: file, line: document.line(of: path), key: TOMLPathComponent.render(path), message: message))
    }

    func isTableLike(_ value: TOMLValue?) -> Bool {
        guard let value else { return false }
        if value.kind == .table { return true }
        // An array of tables, `[[name]]`.
        if let array = value.array, let first = array.first, first.kind == .table { return true }
        return false
    }

    func suggestion(for name: String, in section: ConfigSection) -> String {
        suggestion(for: name, among: section.keys.map(\.name) + section.tableArrays, in: "[\(section.name)]")
    }

    /// For an unknown key in `table` (as the file spells it) that has `names`.
    func suggestion(for name: String, among names: [String], in table: String) -> String {
        if let close = closest(to: name, among: names) { return "; did you mean '\(close)'?" }
        if let home = SluiceConfig.schema.first(where: { $0.key(named: name) != nil }) {
            return "; '\(name)' belongs in [\(home.name)]"
        }
        if SluiceConfig.interfaceKeys.contains(where: { $0.name == name }) {
            return "; '\(name)' belongs in [[interface]]"
        }
        return "; \(table) has \(names.joined(separator: ", "))"
    }

    func suggestion(forTopLevel name: String, isTable: Bool) -> String {
        // As a file spells them: [daemon], [[interface]].
        var headers: [String: String] = [:]
        for section in SluiceConfig.schema { headers[section.name] = "[\(section.name)]" }
        for array in SluiceConfig.tableArrays { headers[array] = "[[\(array)]]" }
        let names = SluiceConfig.schema.map(\.name) + SluiceConfig.tableArrays
        if let close = closest(to: name, among: names) { return "; did you mean \(headers[close]!)?" }
        if !isTable, let home = SluiceConfig.schema.first(where: { $0.key(named: name) != nil }) {
            return "; did you mean '\(name)' in [\(home.name)]?"
        }
        return "; the tables are \(names.map { headers[$0]! }.joined(separator: ", "))"
    }

    /// The candidate within a small edit distance (typos, not different words).
    func closest(to name: String, among candidates: [String]) -> String? {
        let target = Array(name.lowercased().unicodeScalars)
        guard target.count <= 64 else { return nil }
        let threshold = max(1, min(3, target.count / 3))
        return candidates
            .map { ($0, editDistance(target, Array($0.unicodeScalars))) }
            .filter { $0.1 <= threshold }
            .min { $0.1 < $1.1 }?.0
    }

    func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
