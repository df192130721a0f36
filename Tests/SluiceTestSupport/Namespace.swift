import Foundation

/// The argv that runs `argv` inside network namespace `namespace` (or as is
/// for the root namespace, `nil`). `ip netns exec` also remounts /sys, so
/// /sys/class/net shows that namespace's links: `setns()` alone would not.
public func namespaceCommand(_ namespace: String?, _ argv: [String]) -> [String] {
    guard let namespace else { return argv }
    return ["ip", "netns", "exec", namespace] + argv
}

/// Runs `argv` to completion inside network namespace `namespace`.
@discardableResult
public func inNamespace(
    _ namespace: String?, _ argv: [String],
    environment: [String: String] = [:], check: Bool = false
) throws -> CommandResult {
    try run(namespaceCommand(namespace, argv), environment: environment, check: check)
}

/// Names of the named network namespaces (`ip netns list`).
public func networkNamespaces() throws -> [String] {
    let result = try run(["ip", "netns", "list"], check: true)
    // Lines look like "NAME" or "NAME (id: 3)".
    return result.stdout.split(separator: "\n").compactMap { line in
        line.split(separator: " ").first.map(String.init)
    }
}

/// Whether a link called `interface` exists in `namespace` (root when nil).
public func linkExists(_ interface: String, in namespace: String? = nil) throws -> Bool {
    var argv = ["ip"]
    if let namespace { argv += ["-n", namespace] }
    argv += ["link", "show", "dev", interface]
    return try run(argv).succeeded
}
