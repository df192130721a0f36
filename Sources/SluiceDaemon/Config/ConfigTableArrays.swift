import SluiceModules
import SluiceProtocol

extension SluiceConfig.Pipeline {
    /// Each module is built once per queue; a file must not be able to ask
    /// for thousands of 16-million-slot count tables.
    public static let maximumModules = 32
}

extension SluiceConfig.Interface {
    public static let maximumInterfaces = 256
}

/// `[[interface]]` and `[[pipeline.modules]]`: arrays of tables, checked
/// element by element with errors at `interface[1].channels`,
/// `pipeline.modules[0].capacity` (elements count from 0).
extension Validation {
    mutating func decodeInterfaces(_ value: TOMLValue?) -> [SluiceConfig.Interface] {
        let root: [TOMLPathComponent] = ["interface"]
        guard let elements = tables(value, at: root, header: "[[interface]]",
                                    maximumCount: SluiceConfig.Interface.maximumInterfaces)
        else { return [] }
        let keys = SluiceConfig.interfaceKeys
        var interfaces: [SluiceConfig.Interface] = []
        var firstByName: [String: Int] = [:]
        for (position, table) in elements.enumerated() {
            let path = root + [.element(position)]
            guard let table else { continue }
            for name in table.keys where !keys.contains(where: { $0.name == name }) {
                let what = isTableLike(table[name]) ? "unknown table" : "unknown key"
                report(path + [.key(name)], what + suggestion(
                    for: name, among: keys.map(\.name), in: "[[interface]]"))
            }
            var interface = SluiceConfig.Interface(name: "")
            var rejected: Set<String> = []
            for key in keys {
                let value = table[key.name]
                if key.name == "name" && value == nil {
                    report(path + ["name"], "missing; every [[interface]] names the network interface to use")
                    rejected.insert(key.name)
                } else if let message = key.apply(value, &interface) {
                    report(path + [.key(key.name)], message)
                    rejected.insert(key.name)
                }
            }
            let portProtocols: [SluiceConfig.Interface.PrefilterProtocol] = [.udp, .tcp]
            if !interface.prefilterPorts.isEmpty, !rejected.contains("prefilter_protocols"),
               !interface.prefilterProtocols.contains(where: portProtocols.contains) {
                report(path + ["prefilter_ports"],
                       "ports apply to udp and tcp only; add \"udp\" or \"tcp\" to prefilter_protocols")
            }
            if !rejected.contains("name") {
                if let first = firstByName[interface.name] {
                    let firstPath: [TOMLPathComponent] = root + [.element(first), "name"]
                    let place = document.line(of: firstPath).map { " (line \($0))" } ?? ""
                    report(path + ["name"], "interface \(ConfigText.quoted(interface.name)) is already configured"
                           + " by \(TOMLPathComponent.render(root + [.element(first)]))\(place)")
                } else {
                    firstByName[interface.name] = position
                }
            }
            interfaces.append(interface)
        }
        return interfaces
    }

    mutating func decodeModules(_ value: TOMLValue?) -> [SluiceConfig.Module] {
        let root: [TOMLPathComponent] = ["pipeline", "modules"]
        guard let elements = tables(value, at: root, header: "[[pipeline.modules]]",
                                    maximumCount: SluiceConfig.Pipeline.maximumModules)
        else { return [] }
        let kinds = "the kinds are \(ModuleKind.allCases.map(\.rawValue).joined(separator: ", "))"
        var modules: [SluiceConfig.Module] = []
        for (position, table) in elements.enumerated() {
            let path = root + [.element(position)]
            guard let table else { continue }
            guard let kindValue = table["kind"] else {
                report(path + ["kind"], "missing; every [[pipeline.modules]] needs a kind; \(kinds)")
                continue
            }
            guard let kindText = kindValue.string else {
                report(path + ["kind"], ConfigText.mismatch(expected: "a string", got: kindValue))
                continue
            }
            guard let kind = ModuleKind(rawValue: kindText) else {
                report(path + ["kind"], "\(ConfigText.quoted(kindText)) is not a module kind; \(kinds)")
                continue
            }
            var options: [String: ModuleOptionValue] = [:]
            var convertible = true
            for name in table.keys where name != "kind" {
                if let option = optionValue(table[name]!, at: path + [.key(name)]) {
                    options[name] = option
                } else {
                    convertible = false
                }
            }
            if convertible {
                do {
                    try kind.descriptor.validate(options)
                } catch let rejection as ModuleConfigurationError {
                    report(path + Self.optionPath(rejection.option), rejection.reason)
                } catch {
                    report(path, "module \(ConfigText.quoted(kind.rawValue)): \(error)")
                }
            }
            modules.append(SluiceConfig.Module(kind: kind, options: options, line: document.line(of: path)))
        }
        return modules
    }

    /// The elements of an array of tables; nil (reported) when `value` is
    /// not an array, has too many elements, and a nil element for each
    /// element that is not a table (reported too).
    mutating func tables(
        _ value: TOMLValue?, at root: [TOMLPathComponent], header: String, maximumCount: Int
    ) -> [TOMLTable?]? {
        guard let value else { return nil }
        guard let array = value.array else {
            report(root, ConfigText.mismatch(expected: "an array of tables (\(header))", got: value))
            return nil
        }
        guard array.count <= maximumCount else {
            report(root, "\(array.count) tables, at most \(maximumCount) allowed")
            return nil
        }
        return array.enumerated().map { position, element in
            guard let table = element.table else {
                report(root + [.element(position)], ConfigText.mismatch(expected: "a table", got: element))
                return nil
            }
            return table
        }
    }

    /// A module option as the modules take it; nil (reported) for the TOML
    /// types they have no use for (floats, dates, times).
    mutating func optionValue(_ value: TOMLValue, at path: [TOMLPathComponent]) -> ModuleOptionValue? {
        if let text = value.string { return .string(text) }
        if let integer = value.int { return .integer(Int64(integer)) }
        if let flag = value.bool { return .bool(flag) }
        if let array = value.array {
            var items: [ModuleOptionValue] = []
            for (position, element) in array.enumerated() {
                guard let item = optionValue(element, at: path + [.element(position)]) else { return nil }
                items.append(item)
            }
            return .array(items)
        }
        if let table = value.table {
            var entries: [String: ModuleOptionValue] = [:]
            for name in table.keys {
                guard let entry = optionValue(table[name]!, at: path + [.key(name)]) else { return nil }
                entries[name] = entry
            }
            return .table(entries)
        }
        report(path, ConfigText.mismatch(expected: "a string, integer, boolean, array or table", got: value))
        return nil
    }

    /// `rules[2].dport` → rules, [2], dport: the option paths modules report,
    /// as document paths so the error lands on that option's line.
    static func optionPath(_ option: String) -> [TOMLPathComponent] {
        guard !option.isEmpty else { return [] }
        var path: [TOMLPathComponent] = []
        for segment in option.split(separator: ".", omittingEmptySubsequences: false) {
            let parts = segment.split(separator: "[", omittingEmptySubsequences: false)
            guard let key = parts.first, !key.isEmpty else { return [.key(option)] }
            path.append(.key(String(key)))
            for part in parts.dropFirst() {
                guard part.hasSuffix("]"), let element = Int(part.dropLast()), element >= 0 else {
                    return [.key(option)]
                }
                path.append(.element(element))
            }
        }
        return path
    }
}
