import CSluiceShims
import Glibc
import SluiceModules
import SluiceProtocol
import SluiceTestSupport
import XCTest

/// The packet path must not touch the heap. Two real counters:
///
/// * glibc's own accounting (`mallinfo2`): bytes and mmap()ed blocks in use
///   before and after a million packets, in process;
/// * every malloc call, traced by glibc's `mtrace` (libc_malloc_debug.so,
///   preloaded into a child run of this same test binary, tracing only the
///   measured loop): catches an allocation freed again at once, which the
///   in-use figures cannot see. Swift allocates objects, arrays and strings
///   through malloc, so this also counts Swift heap objects.
final class AllocationTests: XCTestCase {
    #if arch(arm64)
    static let mallocDebugLibrary = "/lib/aarch64-linux-gnu/libc_malloc_debug.so.0"
    #else
    static let mallocDebugLibrary = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"
    #endif
    static let traceVariable = "SLUICE_TEST_MALLOC_TRACE"

    /// Parser + count + filter + reflect over one reused 64-frame batch, half
    /// of whose frames carry a driver L4 hash (count's other bucket choice).
    final class Workload {
        static let batchSize = 64
        let umem = TestUMEM(frames: batchSize)
        let metadata = UnsafeMutablePointer<RxMetadata>.allocate(capacity: batchSize)
        let batch: PacketBatch
        let count = CountModule(options: .init(capacity: 4096, top: 10))
        let filter: FilterModule
        let reflect = ReflectModule()
        private(set) var packets = 0

        init() throws {
            for index in 0..<Self.batchSize {
                switch index % 4 {
                case 0: umem.add(udp4("10.0.0.\(index)", "10.0.1.1", UInt16(index), 53))
                case 1: umem.add(udp6("fd00::\(index)", "fd00::1", UInt16(index), 443))
                case 2: umem.add(FrameBuilder(network: FrameBuilder.ipv4(), transport: .tcp(source: UInt16(index), destination: 80)).build())
                default: umem.add(Array(udp4("10.0.0.1", "10.0.0.2", 1, 2).prefix(index % 40)))
                }
            }
            for index in 0..<Self.batchSize {
                metadata[index] = index % 2 == 0
                    ? RxMetadata(timestamp: 0, hash: UInt32(index) &* 2_654_435_761, hashType: RxMetadata.hashTypeL4,
                                 flags: RxMetadata.hashValid)
                    : .none
            }
            batch = PacketBatch(
                umem: umem.umem, descriptors: umem.descriptors, headers: umem.headers, count: Self.batchSize, metadata: metadata)
            filter = try XCTUnwrap(
                try ModuleKind.filter.descriptor.make([
                    "rules": .array([
                        .table(["action": .string("drop"), "proto": .string("udp"), "dport": .integer(53), "src": .string("10.0.0.0/24")]),
                        .table(["action": .string("pass"), "src": .string("fd00::/8")]),
                    ]),
                ]) as? FilterModule)
        }

        deinit { metadata.deallocate() }

        func run(batches: Int) {
            for _ in 0..<batches {
                for index in 0..<Self.batchSize { batch.descriptors[index].verdict = .pass }
                HeaderParser.parse(batch)
                count.process(batch)
                filter.process(batch)
                reflect.process(batch)
            }
            packets += batches * Self.batchSize
        }

        /// The modules really did their work on every packet.
        func verify(file: StaticString = #filePath, line: UInt = #line) {
            let counted = count.snapshot().counters
            XCTAssertEqual((counted["packets"] ?? 0) + (counted["malformed"] ?? 0), UInt64(packets), file: file, line: line)
            XCTAssertGreaterThan(counted["driver_hash_packets"] ?? 0, 0, "the driver-hash path ran", file: file, line: line)
            // 48 flows, and the 32 that reflect turns around in place before the next pass.
            XCTAssertEqual(counted["flows"], 80, file: file, line: line)
            XCTAssertEqual(filter.snapshot().counters["dropped"], UInt64(packets / 4), file: file, line: line)
            XCTAssertEqual(reflect.snapshot().counters["reflected"], UInt64(packets / 2), file: file, line: line)
        }
    }

    /// mallinfo2 counts the whole process: another thread of the test
    /// process (the XCTest harness, Foundation) may allocate during the
    /// window — seen under QEMU's emulation, where the window lasts ~40 s.
    /// A leak in the packet path grows every window; such background noise
    /// does not recur in each. So: up to three windows of a million packets,
    /// and at least one must leave malloc's figures exactly as they were.
    /// (Every single malloc call in the packet loop, of any thread, is what
    /// ``testNoMallocCallsWhileProcessingPackets()`` catches.)
    func testMallocInUseDoesNotGrowOverAMillionPackets() throws {
        let workload = try Workload()
        workload.run(batches: 100)  // warm-up: the flow table fills, lazy globals initialise
        var windows: [String] = []
        for _ in 0..<3 {
            let before = sluice_malloc_stats_now()
            workload.run(batches: 1_000_000 / Workload.batchSize)
            let after = sluice_malloc_stats_now()
            if after.in_use_bytes == before.in_use_bytes, after.mmap_blocks == before.mmap_blocks,
               after.mmap_bytes == before.mmap_bytes {
                break
            }
            windows.append("in use \(before.in_use_bytes) → \(after.in_use_bytes) bytes, "
                + "mmap()ed \(before.mmap_blocks) → \(after.mmap_blocks) blocks, \(before.mmap_bytes) → \(after.mmap_bytes) bytes")
        }
        XCTAssertLessThan(windows.count, 3, "malloc's figures changed in every window of a million packets:\n"
            + windows.joined(separator: "\n"))
        workload.verify()
    }

    /// Run by ``mallocCalls(mode:)`` in a child process with glibc's malloc
    /// tracer preloaded; on its own it checks the workload's results.
    /// Mode "packets" traces the packet loop, "control" a loop that
    /// allocates on purpose (proof that the tracer sees allocations).
    func testTracedWorkload() throws {
        let workload = try Workload()
        workload.run(batches: 100)
        let mode = ProcessInfo.processInfo.environment[Self.traceVariable]
        typealias TraceControl = @convention(c) () -> Void
        var start: TraceControl?, stop: TraceControl?
        if mode != nil {
            // libc.so.6 keeps a do-nothing mtrace as the default version; the
            // working one is the preloaded library's (a non-default version).
            let library = try XCTUnwrap(dlopen(Self.mallocDebugLibrary, RTLD_NOW | RTLD_NOLOAD), "not preloaded")
            start = unsafeBitCast(try XCTUnwrap(dlvsym(library, "mtrace", "GLIBC_2.2.5")), to: TraceControl.self)
            stop = unsafeBitCast(try XCTUnwrap(dlvsym(library, "muntrace", "GLIBC_2.2.5")), to: TraceControl.self)
        }
        var kept: [[UInt8]] = []
        kept.reserveCapacity(16)
        start?()
        if mode == "control" {
            for size in 1...10 { kept.append([UInt8](repeating: 1, count: size * 100)) }
        } else {
            workload.run(batches: 200_000 / Workload.batchSize)
        }
        stop?()
        workload.verify()
        XCTAssertEqual(kept.count, mode == "control" ? 10 : 0)
    }

    /// malloc/calloc/realloc calls glibc's tracer saw in a child run of ``testTracedWorkload()``.
    func mallocCalls(mode: String) throws -> Int {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.mallocDebugLibrary), "no \(Self.mallocDebugLibrary)")
        let trace = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("mtrace")).path
        defer { unlink(trace) }
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        // glibc's mtrace is not thread-safe (its hooks race with the other
        // threads of the test process), and once in a while the traced child
        // dies of SIGSEGV inside the tracer. A child that crashed is run
        // again, at most three times; one that ran and failed is not.
        var attempts: [CommandResult] = []
        var result: CommandResult
        repeat {
            unlink(trace)
            result = try runCommand(
                [binary, "SluiceModulesTests.AllocationTests/testTracedWorkload"],
                environment: ["LD_PRELOAD": Self.mallocDebugLibrary, "MALLOC_TRACE": trace, Self.traceVariable: mode])
            attempts.append(result)
        } while !(result.status == 0 || result.status == 1) && attempts.count < 3
        XCTAssertTrue(result.succeeded, attempts.map(\.description).joined(separator: "\n---\n"))
        XCTAssertTrue(result.stdout.contains("Executed 1 test, with 0 failures") || result.stderr.contains("Executed 1 test, with 0 failures"), result.description)
        let text = try String(contentsOfFile: trace, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("= Start"), "not a malloc trace: \(text.prefix(200))")
        // "@ caller + 0xADDR 0xSIZE" for malloc/calloc, "@ caller > 0xADDR 0xSIZE" for realloc.
        return text.split(separator: "\n").filter { $0.contains(" + 0x") || $0.contains(" > 0x") }.count
    }

    func testNoMallocCallsWhileProcessingPackets() throws {
        XCTAssertEqual(try mallocCalls(mode: "packets"), 0)
    }

    func testMallocTraceSeesAllocations() throws {
        XCTAssertGreaterThanOrEqual(try mallocCalls(mode: "control"), 10)
    }
}
