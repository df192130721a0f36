import Foundation
import Synchronization

public struct CommandResult: CustomStringConvertible, Sendable {
    public var argv: [String]
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var succeeded: Bool { status == 0 }
    public var description: String {
        "\(argv.joined(separator: " ")) exited \(status)\nstdout: \(stdout)\nstderr: \(stderr)"
    }
}

public struct CommandFailed: Error, CustomStringConvertible {
    public var result: CommandResult
    public var description: String { result.description }
}

/// Runs a program to completion and captures its output. `argv[0]` is looked
/// up in PATH (with /usr/sbin and /sbin added: ip, ethtool live there).
@discardableResult
public func runCommand(
    _ argv: [String],
    environment: [String: String] = [:],
    stdin: String? = nil,
    check: Bool = false
) throws -> CommandResult {
    precondition(!argv.isEmpty)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = argv
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = (env["PATH"] ?? "/usr/bin:/bin") + ":/usr/sbin:/sbin:/usr/local/sbin"
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    // Drain stderr on another thread so a chatty child cannot block on a full pipe.
    final class Drained: Sendable { let data = Mutex(Data()) }
    let errData = Drained()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        let data = err.fileHandleForReading.readDataToEndOfFile()
        errData.data.withLock { $0 = data }
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let result = CommandResult(
        argv: argv, status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.data.withLock { $0 }, as: UTF8.self))
    if check && !result.succeeded { throw CommandFailed(result: result) }
    return result
}

/// ``runCommand(_:environment:stdin:check:)`` under its short name, for
/// code outside XCTestCase (whose `run()` shadows it).
@discardableResult
public func run(
    _ argv: [String], environment: [String: String] = [:], stdin: String? = nil, check: Bool = false
) throws -> CommandResult {
    try runCommand(argv, environment: environment, stdin: stdin, check: check)
}

/// Unique, short names for namespaces and links (IFNAMSIZ is 16 with the NUL).
public func uniqueName(_ prefix: String) -> String {
    let suffix = String(UInt32.random(in: 0...0xFFFFF), radix: 36)
    return String((prefix + suffix).prefix(15))
}

/// The directory holding the built products (sluiced, sluicectl, plugins):
/// the test bundle lives there.
public var productsDirectory: URL {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // On Linux the runner is <products>/SluicePackageTests.xctest.
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    return dir
}

/// The repository root (for tools/ and etc/).
public var repositoryRoot: URL {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            return dir
        }
        dir = dir.deletingLastPathComponent()
    }
    fatalError("Package.swift not found above \(#filePath)")
}
