import Foundation
import ArgumentParser
import SluiceDaemon

#if canImport(Glibc)
import Glibc
#endif

@main
struct Sluiced: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluiced",
        abstract: "Sluice: AF_XDP receive pipelines with driver-quirk-aware NIC configuration.",
        discussion: """
            Exit status: 0 after a graceful stop, 78 (EX_CONFIG) for a configuration that does \
            not validate, 1 for any other failure.
            """)

    @Option(name: .long, help: "Configuration file (TOML).")
    var config: String = "/etc/sluice/sluice.toml"

    @Flag(name: .long, help: "Validate the configuration file and exit.")
    var check = false

    func run() async throws {
        let loaded: SluiceConfig
        do {
            loaded = try SluiceConfig.load(path: config)
        } catch {
            printError("sluiced: configuration rejected:\n\(error)")
            throw ExitCode(78)
        }
        if check {
            print("\(config): OK")
            return
        }
        do {
            let daemon = try Daemon(configPath: config, config: loaded)
            try await daemon.run()
        } catch {
            printError("sluiced: \(error)")
            throw ExitCode.failure
        }
    }
}

func printError(_ message: String) {
    var line = message
    if !line.hasSuffix("\n") { line += "\n" }
    FileHandle.standardError.write(Data(line.utf8))
}
