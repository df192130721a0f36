import ArgumentParser
import SluiceControl
import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Exit status of sluicectl: 0 ok, 1 the daemon refused or the command
/// failed, 2 usage, 3 the daemon cannot be reached.
enum Exit {
    static let commandFailed: Int32 = 1
    static let usage: Int32 = 2
    static let unreachable: Int32 = 3
}

@main
enum SluicectlMain {
    static func main() {
        do {
            var command = try Sluicectl.parseAsRoot(movingConnectionOptionsAfterSubcommand(CommandLine.arguments))
            try command.run()
        } catch let failure as CommandFailure {
            printToStandardError("sluicectl: \(failure.message)")
            exit(failure.status)
        } catch {
            let code = Sluicectl.exitCode(for: error)
            let message = Sluicectl.fullMessage(for: error)
            if code == .success {
                print(message)
                exit(0)
            }
            if !message.isEmpty { printToStandardError(message) }
            exit(code == .validationFailure ? Exit.usage : code.rawValue)
        }
    }
}

/// A line on stderr. (Glibc's `stderr` is a mutable global the Swift 6
/// language mode will not touch; the descriptor is what it wraps.)
func printToStandardError(_ line: String) {
    flushStandardOutput()
    var text = line + "\n"
    text.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
}

/// Pushes out what `print` buffered (a stream's lines must not wait for the next event).
func flushStandardOutput() {
    fflush(nil)
}

/// `sluicectl --socket P --json status` reads naturally, but the options
/// belong to each subcommand: move those given before the subcommand after it.
func movingConnectionOptionsAfterSubcommand(_ argv: [String]) -> [String] {
    var leading: [String] = []
    var index = 1
    while index < argv.count {
        let token = argv[index]
        if token == "--json" || token.hasPrefix("--socket=") {
            leading.append(token)
            index += 1
        } else if token == "--socket", index + 1 < argv.count {
            leading += [token, argv[index + 1]]
            index += 2
        } else {
            break
        }
    }
    guard index < argv.count, !leading.isEmpty else { return Array(argv.dropFirst()) }
    return [argv[index]] + leading + argv[(index + 1)...]
}

struct CommandFailure: Error {
    var status: Int32
    var message: String
}

struct Sluicectl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluicectl",
        abstract: "Administer sluiced over its control socket.",
        discussion: "Exit status: 0 ok, 1 command failed, 2 usage error, 3 cannot reach the daemon.",
        subcommands: [
            Status.self, Commands.self, Stats.self, Reload.self, Shutdown.self, Call.self,
            NICCommand.self, ChannelsCommand.self, FeaturesCommand.self, RingsCommand.self,
            SteerCommand.self, FlowHashCommand.self, RSSCommand.self, PluginsCommand.self, PipelineCommand.self,
            Doctor.self, Trace.self,
        ])
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Control socket path.")
    var socket: String = ControlProtocol.defaultSocketPath

    @Flag(name: .long, help: "Print the daemon's raw JSON reply.")
    var json = false

    func connect() throws -> ControlClient {
        do {
            return try ControlClient(socketPath: socket)
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
    }

    /// Runs one command and returns its `result`, or exits 1 with the
    /// daemon's error message.
    func call(_ command: String, _ arguments: [String: JSONValue] = [:]) throws -> JSONValue {
        let client = try connect()
        defer { client.close() }
        let reply: JSONValue
        do {
            reply = try client.call(command, arguments: arguments)
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
        if json { print(reply.serialized()) }
        guard reply["ok"] == .bool(true) else {
            let code = reply["error"]?["code"]?.stringValue ?? "error"
            let message = reply["error"]?["message"]?.stringValue ?? reply.serialized()
            throw CommandFailure(status: Exit.commandFailed, message: "\(command): \(code): \(message)")
        }
        return reply["result"] ?? .null
    }

    /// Runs `method` with its typed request and decodes its typed reply.
    func call<Method: ControlMethod>(_ method: Method.Type, _ request: Method.Request) throws -> Method.Response {
        let result = try call(Method.name, try JSONValue(encoding: request).objectValue ?? [:])
        do {
            return try result.decode(as: Method.Response.self)
        } catch {
            throw CommandFailure(status: Exit.commandFailed, message: "\(Method.name): unexpected reply: \(error)")
        }
    }

    func call<Method: ControlMethod>(_ method: Method.Type) throws -> Method.Response
    where Method.Request == NoArguments {
        try call(method, NoArguments())
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the daemon's status.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let status = try connection.call(Methods.Status.self)
        if connection.json { return }
        print(Render.keyValues(try JSONValue(encoding: status)))
    }
}

struct Commands: ParsableCommand {
    static let configuration = CommandConfiguration(
        // `sluicectl help` asks the daemon; `sluicectl CMD --help` explains sluicectl itself.
        commandName: "help", abstract: "List the daemon's commands, their arguments and levels.",
        aliases: ["commands"])
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let help = try connection.call(Methods.Help.self)
        if connection.json { return }
        var rows: [[String]] = [["COMMAND", "LEVEL", "ARGUMENTS", "SUMMARY"]]
        for command in help.commands {
            let arguments = command.arguments.map { $0.required ? $0.name : "[\($0.name)]" }
            rows.append([command.name, command.level.rawValue, arguments.joined(separator: " "), command.summary])
        }
        print(Render.table(rows))
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show counters; --watch for a live table.")
    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Keep printing the counters as the daemon streams them.")
    var watch = false

    @Option(name: .long, help: "Milliseconds between updates with --watch (100...60000).")
    var interval: Int = 1000

    @Option(name: .long, help: "With --watch: stop after this many updates.")
    var count: Int?

    func validate() throws {
        guard (100...60_000).contains(interval) else { throw ValidationError("--interval must be 100...60000") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        guard watch else {
            let stats = try connection.call(Methods.StatsGet.self)
            if !connection.json { print(StatsText.summary(stats)) }
            return
        }
        let client = try connection.connect()
        defer { client.close() }
        var seen = 0
        let interactive = isatty(STDOUT_FILENO) == 1
        func show(_ event: JSONValue) {
            seen += 1
            if connection.json {
                print(event.serialized())
            } else {
                if interactive { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                print(StatsText.summary(event["data"] ?? .null))
                print("")
            }
            flushStandardOutput()
        }
        do {
            let reply = try client.call(Methods.StatsSubscribe.self, .init(intervalMilliseconds: interval))
            guard reply["ok"] == .bool(true) else {
                throw CommandFailure(status: Exit.commandFailed,
                                     message: reply["error"]?["message"]?.stringValue ?? reply.serialized())
            }
            while count.map({ seen < $0 }) ?? true {
                guard let line = try client.readLine() else {
                    throw CommandFailure(status: Exit.unreachable, message: "sluiced closed the connection")
                }
                guard let event = try? JSONValue.parse(Array(line.utf8)), event["event"] != nil else { continue }
                show(event)
            }
        } catch let error as ControlClientError {
            throw CommandFailure(status: Exit.unreachable, message: error.description)
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read the configuration file (like SIGHUP).")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let outcome = try connection.call(Methods.ConfigReload.self)
        if !connection.json { print(Render.keyValues(try JSONValue(encoding: outcome))) }
    }
}

struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the daemon gracefully.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        _ = try connection.call(Methods.Shutdown.self)
        if !connection.json { print("sluiced is stopping") }
    }
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send any command, e.g. `sluicectl call channels.get --args '{\"iface\":\"eth0\"}'`.")
    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Command name (noun.verb); `sluicectl commands` lists them.")
    var command: String

    @Option(name: .long, help: "Arguments as a JSON object.")
    var args: String?

    func run() throws {
        var arguments: [String: JSONValue] = [:]
        if let args {
            guard let parsed = try? JSONValue.parse(Array(args.utf8)), let object = parsed.objectValue else {
                throw CommandFailure(status: Exit.usage, message: "--args must be a JSON object, e.g. '{\"iface\":\"eth0\"}'")
            }
            arguments = object
        }
        let result = try connection.call(command, arguments)
        if !connection.json { print(Render.keyValues(result)) }
    }
}
