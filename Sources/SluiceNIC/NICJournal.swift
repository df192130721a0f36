import Foundation
import SluiceSystem

extension JournaledChange {
    /// Whether `other` changes the same setting (so the two coalesce and
    /// the oldest original is the one restored).
    func isSameSetting(as other: JournaledChange) -> Bool {
        switch (self, other) {
        case (.channels, .channels), (.rings, .rings), (.rss, .rss): return true
        case let (.feature(a, _, _), .feature(b, _, _)): return a == b
        case let (.flowHash(a, _, _), .flowHash(b, _, _)): return a == b
        case let (.sysfs(a, _, _), .sysfs(b, _, _)): return a == b
        default: return false
        }
    }

    /// This (older) change followed by `newer` of the same setting.
    func coalesced(with newer: JournaledChange) -> JournaledChange {
        switch (self, newer) {
        case let (.channels(o1, a1), .channels(o2, a2)):
            return .channels(original: o2.merging(o1), applied: a1.merging(a2))
        case let (.rings(o1, a1), .rings(o2, a2)):
            return .rings(original: o2.merging(o1), applied: a1.merging(a2))
        case let (.feature(name, original, _), .feature(_, _, applied)):
            return .feature(name: name, original: original, applied: applied)
        case let (.flowHash(type, original, _), .flowHash(_, _, applied)):
            return .flowHash(flowType: type, original: original, applied: applied)
        case let (.rss(original, _), .rss(_, applied)):
            return .rss(original: original, applied: applied)
        case let (.sysfs(setting, original, _), .sysfs(_, _, applied)):
            return .sysfs(setting: setting, original: original, applied: applied)
        default:
            return newer
        }
    }

    /// True when applying it changed nothing (set back to the original).
    var isNoOp: Bool {
        switch self {
        case let .channels(original, applied): return original == applied
        case let .rings(original, applied): return original == applied
        case let .feature(_, original, applied): return original == applied
        case let .flowHash(_, original, applied): return original == applied
        case let .rss(original, applied): return original == applied
        case let .sysfs(_, original, applied): return original == applied
        case .ruleAdded, .ruleDeleted: return false
        }
    }
}

/// The journal file's content.
struct JournalDocument: Codable, Equatable {
    var format = 1
    /// /proc/sys/kernel/random/boot_id when the journal was written: a
    /// journal from another boot describes NIC state that no longer exists.
    var bootID: String
    var nextSequence: UInt64 = 1
    var entries: [JournalEntry] = []

    enum CodingKeys: String, CodingKey { case format, entries, bootID = "boot_id", nextSequence = "next_sequence" }

    /// Journals are written with the wire's snake_case keys; those written
    /// before the wire declared its keys spell them in camelCase
    /// ("bootID", "ruleAdded", "sourceMAC"): read both.
    static func decode(_ bytes: [UInt8]) throws -> JournalDocument {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in SnakeCaseKey(path.last?.stringValue ?? "") }
        return try decoder.decode(JournalDocument.self, from: Data(bytes))
    }
}

/// A key in snake_case: "sourceMAC" becomes "source_mac", "bootID" "boot_id".
private struct SnakeCaseKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }

    init(_ key: String) {
        var snake = ""
        var previous: Character?
        for character in key {
            if character.isUppercase, let previous, previous.isLowercase || previous.isNumber { snake.append("_") }
            snake += character.lowercased()
            previous = character
        }
        stringValue = snake
    }

    init(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { nil }
}

/// The journal file in the state directory (default /var/lib/sluice: it
/// must survive the daemon, unlike the runtime directory systemd deletes).
public final class NICJournal: Sendable {
    public let path: String
    static let fileName = "nic-journal.json"
    /// Entries are small; anything bigger is not a journal Sluice wrote.
    static let sizeLimit = 16 << 20

    public init(stateDirectory: String) {
        path = stateDirectory.hasSuffix("/") ? stateDirectory + Self.fileName : stateDirectory + "/" + Self.fileName
    }

    func load() throws -> JournalDocument? {
        let bytes: [UInt8]?
        do {
            bytes = try DurableFile.read(path, limit: Self.sizeLimit)
        } catch {
            throw NICError.journal("cannot read \(path): \(error)")
        }
        guard let bytes else { return nil }
        do {
            return try JournalDocument.decode(bytes)
        } catch {
            throw NICError.journal("\(path) is not a valid journal: \(error)")
        }
    }

    func save(_ document: JournalDocument) throws {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try encoder.encode(document)
            try Directory.create(Directory.parent(of: path), mode: 0o700)
            try DurableFile.write(Array(data), to: path)
        } catch {
            throw NICError.journal("cannot write \(path): \(error)")
        }
    }

    func clear() throws {
        do {
            try DurableFile.remove(path)
        } catch {
            throw NICError.journal("cannot remove \(path): \(error)")
        }
    }

    /// Moves an unreadable journal aside so the daemon can start.
    func quarantine() -> String {
        let aside = path + ".unreadable"
        _ = rename(path, aside)
        return aside
    }
}
