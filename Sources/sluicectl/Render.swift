import SluiceControl

/// Human output: aligned tables and indented key/value listings.
enum Render {
    static func table(_ rows: [[String]]) -> String {
        guard let header = rows.first else { return "" }
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func keyValues(_ value: JSONValue, indent: String = "") -> String {
        switch value {
        case .object(let object):
            let width = object.keys.map(\.count).max() ?? 0
            return object.keys.sorted().map { key in
                let child = object[key]!
                let label = indent + key + ":"
                switch child {
                case .object(let nested) where !nested.isEmpty:
                    return label + "\n" + keyValues(child, indent: indent + "  ")
                case .array(let items) where items.contains(where: { $0.objectValue != nil }):
                    return label + "\n" + items.map { listItem($0, indent: indent + "  ") }.joined(separator: "\n")
                default:
                    return label.padding(toLength: indent.count + width + 2, withPad: " ", startingAt: 0)
                        + scalar(child)
                }
            }.joined(separator: "\n")
        default:
            return indent + scalar(value)
        }
    }

    /// One element of a list, YAML style: the dash marks where an element
    /// starts, so only its first line carries it ("- name: a" then "  path: b").
    static func listItem(_ item: JSONValue, indent: String) -> String {
        guard let object = item.objectValue, !object.isEmpty else { return indent + "- " + scalar(item) }
        let text = keyValues(item, indent: indent + "  ")
        return indent + "- " + text.dropFirst(indent.count + 2)
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .string(let string): return string
        case .null: return "-"
        case .array(let items): return items.map(scalar).joined(separator: ", ")
        default: return value.serialized()
        }
    }
}
