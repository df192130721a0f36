#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSluiceShims
import CXDP
import Foundation
import Logging
import SluiceModules
import SystemPackage

/// Counters one socket's threads write (relaxed, once per batch) and control
/// threads read at any time. Each counter has a single writer: `malformed`
/// the thread that runs the modules, every other one the RX thread.
final class QueueCounters: @unchecked Sendable {
    enum Name: Int, CaseIterable {
        case rxPackets, rxBytes, handoffDrops, passed, dropped, transmitted, transmitFailed, malformed, invalidFrames
        case busyPollKicks, pollSleeps
        /// Packets that spanned more than one frame, and chains refused
        /// (longer than PacketDescriptor.maximumSegments): their frames recycled.
        case multiBufferPackets, invalidChains
    }
    // Raw words, not an array of ManagedAtomic objects: reaching an object
    // in an array retained and released it on every add (measured with a
    // uprobe on swift_retain: most of the RX thread's ARC traffic).
    private let values = CounterArray(count: Name.allCases.count)

    deinit { values.deallocate() }

    @inline(__always)
    func add(_ name: Name, _ amount: Int) {
        if amount != 0 { values.add(name.rawValue, UInt64(truncatingIfNeeded: amount)) }
    }

    subscript(_ name: Name) -> UInt64 { values.load(name.rawValue) }
}

/// The module chain and the per-batch scratch storage it runs over, owned by
/// one thread (the RX thread inline, the worker when pipelined).
final class BatchProcessor {
    private let modules: ContiguousArray<PacketModule>
    private let umem: UnsafeMutableRawPointer
    let capacity: Int
    let descriptors: UnsafeMutablePointer<PacketDescriptor>
    private let headers: UnsafeMutablePointer<PacketHeaders>
    /// The driver's RX metadata per frame; nil (nothing read) unless the XDP
    /// program stores it and a module wants it.
    private let metadata: UnsafeMutablePointer<RxMetadata>?

    /// Multi-buffer packets of the batch: their segments, each packet's
    /// first segment there, and room to gather headers that cross a frame.
    let segmentCapacity: Int
    let segments: UnsafeMutablePointer<PacketSegment>
    let firstSegment: UnsafeMutablePointer<Int32>
    private let gatherArea: UnsafeMutableRawPointer

    /// `rxMetadata`: the XDP program stores ``RxMetadata`` before each frame.
    init(
        modules: [PacketModule], umem: UnsafeMutableRawPointer, capacity: Int, segmentCapacity: Int = 0,
        rxMetadata: Bool = false
    ) {
        self.modules = ContiguousArray(modules)
        self.umem = umem
        self.capacity = capacity
        descriptors = .allocate(capacity: capacity)
        descriptors.initialize(repeating: PacketDescriptor(address: 0, length: 0, queue: 0), count: capacity)
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: PacketHeaders(), count: capacity)
        if rxMetadata && modules.contains(where: \.wantsRxMetadata) {
            metadata = .allocate(capacity: capacity)
            metadata?.initialize(repeating: .none, count: capacity)
        } else {
            metadata = nil
        }
        self.segmentCapacity = segmentCapacity
        segments = .allocate(capacity: max(1, segmentCapacity))
        segments.initialize(repeating: PacketSegment(address: 0, length: 0), count: max(1, segmentCapacity))
        firstSegment = .allocate(capacity: capacity)
        firstSegment.initialize(repeating: 0, count: capacity)
        gatherArea = .allocate(byteCount: HeaderParser.gatherLength, alignment: 16)
    }

    deinit {
        descriptors.deallocate()
        headers.deallocate()
        metadata?.deallocate()
        segments.deallocate()
        firstSegment.deallocate()
        gatherArea.deallocate()
    }

    /// Parses and runs every module over `descriptors[0..<count]` (with
    /// `chained`, some are multi-buffer packets whose segments are in
    /// `segments`); returns the malformed count (0 without modules).
    @inline(__always)
    func run(count: Int, chained: Bool = false) -> Int {
        // No module reads the headers: parsing would only miss the cache on
        // every frame (measured: 44% of an inline RX thread's time).
        guard count > 0, !modules.isEmpty else { return 0 }
        if let metadata {
            // Stored right before the frame's first byte, which the kernel
            // placed past the chunk's headroom: never before the UMEM.
            for index in 0..<count {
                let address = descriptors[index].address
                metadata[index] = address >= UInt64(RxMetadata.storedSize)
                    ? RxMetadata.take(before: umem + Int(truncatingIfNeeded: address)) : .none
            }
        }
        let batch = PacketBatch(
            umem: umem, descriptors: descriptors, headers: headers, count: count, metadata: metadata,
            chains: chained ? PacketChains(segments: segments, firstSegment: firstSegment) : nil,
            gatherArea: gatherArea)
        let malformed = HeaderParser.parse(batch)
        // Borrowed from the buffer: `for module in modules` copied (retained)
        // each module per batch.
        modules.withUnsafeBufferPointer { chain in
            for index in chain.indices { chain[index].process(batch) }
        }
        return malformed
    }

    /// The segments of `descriptors[0..<count]`'s multi-buffer packets, from
    /// the ring they were handed over in (published before the descriptors,
    /// so all there); sets `firstSegment`. Returns how many it took.
    func takeSegments(from ring: SPSCRing<PacketSegment>, count: Int) -> Int {
        var needed = 0
        for index in 0..<count where descriptors[index].isMultiBuffer {
            firstSegment[index] = Int32(truncatingIfNeeded: needed)
            needed += descriptors[index].segmentCount
        }
        var taken = 0
        while taken < min(needed, segmentCapacity) {
            let got = ring.dequeue(into: UnsafeMutableBufferPointer(start: segments + taken, count: min(needed, segmentCapacity) - taken))
            if got == 0 { break }
            taken += got
        }
        return taken
    }
}

/// One bound queue: its socket, its RX thread and (pipelined) its worker.
// Unchecked: the UMEM, the free-frame stack and the rings are split between
// the RX thread and the worker by design; control threads touch only atomics.
final class QueueRunner: @unchecked Sendable {
    let binding: ChannelBinding
    let socket: XSKSocket
    let counters = QueueCounters()
    private let config: DataPathConfig
    private let batchSize: Int
    private let frameMask: UInt64
    private let frameCount: Int
    private let umemSize: UInt64
    /// Frames not in any ring: the RX thread's private stack.
    private let freeFrames: UnsafeMutablePointer<UInt64>
    private var freeCount: Int
    private let rxProcessor: BatchProcessor
    private let workerProcessor: BatchProcessor?
    private let toWorker: SPSCRing<PacketDescriptor>?
    private let fromWorker: SPSCRing<PacketDescriptor>?
    /// Multi-buffer (socket bound with XDP_USE_SG): the segments of chained
    /// packets travel to the worker and back in rings of their own, each
    /// published before the descriptors that need it.
    private let multiBuffer: Bool
    private let segmentsToWorker: SPSCRing<PacketSegment>?
    private let segmentsFromWorker: SPSCRing<PacketSegment>?
    /// One returned chain's segments (RX thread).
    private let returnedChain: UnsafeMutablePointer<PacketSegment>
    private var chainAssembler: ChainAssembler
    private let workerBell: Doorbell?
    private let returnBell: Doorbell?
    private let stopBell: Doorbell
    private let stopping = ManagedAtomic<Bool>(false)
    private var threads: [Thread] = []
    private let exited = DispatchGroup()
    private let workerExited = DispatchSemaphore(value: 0)
    private let pollSet = UnsafeMutablePointer<pollfd>.allocate(capacity: 3)
    /// Descriptors handed to the worker since its doorbell last rang.
    private var unannounced = 0
    /// Backlog at which the RX thread wakes a dozing worker early.
    private let workerWakeThreshold: Int
    private let alwaysKickTransmit: Bool
    private let logger = Logger(label: "sluice.datapath")

    /// `rxMetadata`: the XDP program stores the driver's RX metadata before each frame.
    init(
        binding: ChannelBinding, socket: XSKSocket, config: DataPathConfig, modules: [PacketModule],
        rxMetadata: Bool = false
    ) throws {
        self.binding = binding
        self.socket = socket
        self.config = config
        batchSize = config.batchSize
        frameMask = ~UInt64(socket.geometry.frameSize - 1)
        let frames = Int(socket.geometry.frameCount)
        frameCount = frames
        umemSize = UInt64(socket.areaSize)
        freeFrames = .allocate(capacity: frames)
        for index in 0..<frames { freeFrames[index] = UInt64(index) * UInt64(socket.geometry.frameSize) }
        freeCount = frames
        stopBell = try Doorbell()
        workerWakeThreshold = max(batchSize, config.handoffRingSize / 4)
        alwaysKickTransmit = !socket.needWakeup || config.busyPoll != nil
        multiBuffer = socket.multiBuffer
        returnedChain = .allocate(capacity: PacketDescriptor.maximumSegments)
        chainAssembler = ChainAssembler(batchSize: config.batchSize)
        // A peek of a batch, plus the rest of a chain that began in it.
        let assembly = multiBuffer ? batchSize + PacketDescriptor.maximumSegments : 0
        switch config.mode {
        case .inline:
            rxProcessor = BatchProcessor(
                modules: modules, umem: socket.area, capacity: batchSize, segmentCapacity: assembly,
                rxMetadata: rxMetadata)
            workerProcessor = nil
            toWorker = nil; fromWorker = nil; workerBell = nil; returnBell = nil
            segmentsToWorker = nil; segmentsFromWorker = nil
        case .pipelined:
            rxProcessor = BatchProcessor(modules: [], umem: socket.area, capacity: batchSize, segmentCapacity: assembly)
            // A worker batch may gather several RX batches' chains: no more
            // segments than frames, nor than a batch of the longest chains.
            workerProcessor = BatchProcessor(
                modules: modules, umem: socket.area, capacity: batchSize,
                segmentCapacity: multiBuffer ? min(batchSize * PacketDescriptor.maximumSegments, frames) : 0,
                rxMetadata: rxMetadata)
            toWorker = try SPSCRing(capacity: config.handoffRingSize)
            // Every frame can be in flight back at once: this ring never fills.
            fromWorker = try SPSCRing(capacity: max(2, frames.nextPowerOfTwo))
            workerBell = try Doorbell()
            returnBell = try Doorbell()
            // A segment is a frame: neither ring can hold more than every frame.
            segmentsToWorker = multiBuffer ? try SPSCRing(capacity: max(2, frames.nextPowerOfTwo)) : nil
            segmentsFromWorker = multiBuffer ? try SPSCRing(capacity: max(2, frames.nextPowerOfTwo)) : nil
        }
        refillFillRing()
    }

    deinit {
        freeFrames.deallocate()
        pollSet.deallocate()
        returnedChain.deallocate()
        chainAssembler.deallocate()
    }

    func start(rxCPU: Int?, workerCPU: Int?) {
        // Queue first: the kernel keeps 15 bytes of a thread name, and `top -H`
        // or `ps -L` should tell the queues apart before the interface.
        let suffix = "\(binding.bindQueue)@\(socket.interface)"
        threads.append(makeThread(name: "rx" + suffix, cpu: rxCPU) { [self] in rxLoop() })
        if config.mode == .pipelined {
            threads.append(makeThread(name: "wk" + suffix, cpu: workerCPU) { [self] in workerLoop() })
        }
        for thread in threads { exited.enter(); thread.start() }
    }

    private func makeThread(name: String, cpu: Int?, _ body: @escaping @Sendable () -> Void) -> Thread {
        let thread = Thread { [exited, logger] in
            // Foundation's Thread.name does not reach the kernel on Linux: the
            // thread would keep the name of the pool thread that started it.
            _ = sluice_name_current_thread(name)
            if let cpu {
                let error = sluice_pin_current_thread(Int32(cpu))
                if error != 0 {
                    logger.warning("\(name): cannot pin to CPU \(cpu) (\(Errno(rawValue: error))); running unpinned")
                }
            }
            body()
            exited.leave()
        }
        thread.name = name
        return thread
    }

    private(set) var isStopped = false

    /// Asks the threads to finish and waits for them (bounded by `timeout`).
    /// A thread that does not finish keeps the socket alive (it is never
    /// freed under a running thread).
    func stop(timeout: Double = 5) -> Bool {
        stopping.store(true, ordering: .releasing)
        stopBell.ring()
        workerBell?.ring()
        returnBell?.ring()
        isStopped = isStopped || exited.wait(timeout: .now() + timeout) == .success
        // The threads' closures hold this runner: let go of them so the
        // socket and UMEM are freed with it.
        if isStopped { threads = [] }
        return isStopped
    }

    // MARK: RX thread

    /// Busy-poll kicks in a row that found the RX ring empty before the RX
    /// thread gives up the CPU and sleeps in poll() (need_wakeup) as without
    /// busy polling; the first packet after a sleep resumes kicking. Each
    /// kick runs the queue's NAPI once (microseconds), so an idle queue
    /// costs well under a millisecond of spinning, never a spinning core.
    static let busyPollEmptyKicks = 64

    private func rxLoop() {
        var returned = [PacketDescriptor](repeating: PacketDescriptor(address: 0, length: 0, queue: 0), count: batchSize)
        // Bound once and passed down: reading the optional properties in the
        // loop retained and released each of them per batch (counted with a
        // uprobe on swift_retain).
        let processor = rxProcessor, toWorker = toWorker, workerBell = workerBell
        let fromWorker = fromWorker, returnBell = returnBell
        // Chosen once for the socket: a busy-polling loop kicks while its
        // ring is empty, up to `busyPollEmptyKicks` times in a row.
        let busyPolling = config.busyPoll != nil
        var emptyKicks = busyPolling ? 0 : Self.busyPollEmptyKicks
        returned.withUnsafeMutableBufferPointer { returnBuffer in
            while !stopping.load(ordering: .relaxed) {
                var progress = false
                reclaimCompletions()
                if let fromWorker {
                    let count = fromWorker.dequeue(into: returnBuffer)
                    if count > 0 { finishReturned(returnBuffer.baseAddress!, count: count); progress = true }
                }
                refillFillRing()
                if receiveBatch(processor, toWorker, workerBell) > 0 {
                    progress = true
                    if busyPolling { emptyKicks = 0 }
                } else if emptyKicks < Self.busyPollEmptyKicks {
                    // The ring is empty: run the NAPI ourselves instead of sleeping.
                    emptyKicks += 1
                    counters.add(.busyPollKicks, 1)
                    _ = recvfrom(socket.fileDescriptor, nil, 0, Int32(MSG_DONTWAIT), nil, nil)
                    continue
                }
                if !progress {
                    counters.add(.pollSleeps, 1)
                    idle(fromWorker, returnBell)
                } else if xsk_ring_prod__needs_wakeup(socket.fill) != 0 {
                    // Busy, but the driver stopped for want of fill descriptors:
                    // kick it without sleeping (idle() kicks through poll()).
                    _ = recvfrom(socket.fileDescriptor, nil, 0, Int32(MSG_DONTWAIT), nil, nil)
                }
            }
        }
        drainAfterStop()
    }

    /// Peeks up to a batch from the RX ring; inline runs the modules here,
    /// pipelined hands the descriptors to the worker.
    private func receiveBatch(
        _ processor: BatchProcessor, _ toWorker: SPSCRing<PacketDescriptor>?, _ workerBell: Doorbell?
    ) -> Int {
        var index: UInt32 = 0
        var count = Int(xsk_ring_cons__peek(socket.rx, UInt32(batchSize), &index))
        guard count > 0 else { return 0 }
        let queue = UInt16(truncatingIfNeeded: binding.bindQueue)
        var bytes = 0
        // Or-ed, not tested per frame: a batch without a chain pays one `or`
        // per frame (options is 0 on a socket bound without XDP_USE_SG).
        var options: UInt32 = 0
        let ring = XSKRingSlots(rx: socket.rx), descriptors = processor.descriptors
        for offset in 0..<count {
            let descriptor = ring[index &+ UInt32(truncatingIfNeeded: offset)]
            descriptors[offset] = PacketDescriptor(address: descriptor.addr, length: descriptor.len, queue: queue)
            bytes &+= Int(descriptor.len)
            options |= descriptor.options
        }
        var chained = false
        if options & XSKSocket.packetContinues != 0 || chainAssembler.discarding {
            let assembled = chainAssembler.assemble(socket.rx, ringIndex: index, peeked: count, queue: queue, into: processor)
            for frame in 0..<assembled.refused { recycle(chainAssembler.refused[frame]) }
            counters.add(.multiBufferPackets, assembled.chains)
            counters.add(.invalidChains, assembled.invalid)
            (count, bytes, chained) = (assembled.packets, assembled.bytes, assembled.chains > 0)
            if count == 0 { return 0 }
        } else {
            xsk_ring_cons__release(socket.rx, UInt32(count))
        }
        counters.add(.rxPackets, count)
        counters.add(.rxBytes, bytes)
        if let toWorker, let workerBell {
            let handed: Int
            if chained, let segmentsToWorker {
                // All or nothing per packet: a packet's segments go first, and
                // only for the packets the descriptor ring has room for.
                handed = min(count, toWorker.freeSlots())
                let segments = handed == 0 ? 0 : segmentsEnd(processor, packets: handed)
                let taken = segmentsToWorker.enqueue(from: UnsafeBufferPointer(start: processor.segments, count: segments))
                precondition(taken == segments, "segment ring sized below the frame count")
                _ = toWorker.enqueue(from: UnsafeBufferPointer(start: processor.descriptors, count: handed))
            } else {
                handed = toWorker.enqueue(from: UnsafeBufferPointer(start: processor.descriptors, count: count))
            }
            unannounced += handed
            // A sleeping worker is woken at once; a dozing one (see workerLoop)
            // only when its backlog would otherwise grow past the threshold.
            if handed > 0, toWorker.takeWakeupRequest() || unannounced >= workerWakeThreshold {
                unannounced = 0
                workerBell.ring()
            }
            if handed < count {
                // The worker is behind: these frames are dropped here, counted, and recycled.
                counters.add(.handoffDrops, count - handed)
                for offset in handed..<count {
                    if chained && processor.descriptors[offset].isMultiBuffer {
                        recycleChain(processor.segments + Int(processor.firstSegment[offset]),
                                     count: processor.descriptors[offset].segmentCount)
                    } else {
                        recycle(processor.descriptors[offset].address)
                    }
                }
            }
        } else {
            counters.add(.malformed, processor.run(count: count, chained: chained))
            if chained {
                finishChained(processor.descriptors, count: count) { processor.segments + Int(processor.firstSegment[$0]) }
            } else {
                finish(processor.descriptors, count: count)
            }
        }
        return count
    }

    /// Where the segments of the first `packets` packets end in `processor.segments`.
    private func segmentsEnd(_ processor: BatchProcessor, packets: Int) -> Int {
        for offset in stride(from: packets - 1, through: 0, by: -1) where processor.descriptors[offset].isMultiBuffer {
            return Int(processor.firstSegment[offset]) + processor.descriptors[offset].segmentCount
        }
        return 0
    }

    /// Applies the verdicts of a processed batch: recycle, or transmit.
    private func finish(_ descriptors: UnsafeMutablePointer<PacketDescriptor>, count: Int) {
        var dropped = 0, transmit = 0
        let fill = socket.fill
        // Frames go straight back into the fill ring, in one pass, as a C
        // receiver does, when it has room for the whole batch: always when it
        // holds every frame (fill_ring >= frames, the default). Through the
        // free-frame stack instead they cost a second copy and pass
        // (callgrind: 29 against 7 instructions per packet). The slots are
        // written first and then reserved, since libxdp's reserve is all or
        // nothing and cannot be taken back: only this thread produces, so
        // the slots past its cached producer index are its own.
        if xsk_prod_nb_free(fill, UInt32(count)) >= UInt32(count) {
            let ring = XSKRingSlots(fill: fill), start = fill.pointee.cached_prod
            let umemSize = umemSize, frameMask = frameMask
            var filled: UInt32 = 0, outside = 0
            for offset in 0..<count {
                let descriptor = descriptors[offset]
                if descriptor.verdict == .transmit {
                    transmit &+= 1
                    continue
                }
                dropped &+= descriptor.verdict == .drop ? 1 : 0
                // A module rewrote the address: refused, as recycle() does.
                guard descriptor.address < umemSize else {
                    outside &+= 1
                    continue
                }
                ring[start &+ filled] = descriptor.address & frameMask
                filled &+= 1
            }
            if filled > 0 {
                var index: UInt32 = 0
                let reserved = xsk_ring_prod__reserve(fill, filled, &index)
                precondition(reserved == filled && index == start, "the fill ring's free slots changed under its producer")
                xsk_ring_prod__submit(fill, filled)
            }
            counters.add(.invalidFrames, outside)
            counters.add(.passed, count - dropped - transmit)
            counters.add(.dropped, dropped)
            if transmit > 0 { self.transmit(descriptors, count: count, wanted: transmit) }
            return
        }
        // The stack in locals for the loop: through `self`, every frame
        // reloaded and stored freeCount (callgrind: 22 instructions per packet).
        var stack = FreeFrameStack(self)
        for offset in 0..<count {
            let descriptor = descriptors[offset]
            if descriptor.verdict == .transmit {
                transmit += 1
                continue
            }
            dropped &+= descriptor.verdict == .drop ? 1 : 0
            stack.push(descriptor.address)
        }
        stack.store(into: self)
        counters.add(.passed, count - dropped - transmit)
        counters.add(.dropped, dropped)
        if transmit > 0 { self.transmit(descriptors, count: count, wanted: transmit) }
    }

    /// `finish` for a batch holding multi-buffer packets: every frame of a
    /// chain goes back to the fill ring once. A chain is never transmitted
    /// (the reflect module leaves chains alone): a transmit verdict on one
    /// counts as a failed transmit and its frames are recycled.
    private func finishChained(
        _ descriptors: UnsafeMutablePointer<PacketDescriptor>, count: Int,
        segments: (Int) -> UnsafeMutablePointer<PacketSegment>
    ) {
        var passed = 0, dropped = 0, refused = 0, transmit = 0
        for offset in 0..<count {
            let descriptor = descriptors[offset]
            if descriptor.isMultiBuffer {
                switch descriptor.verdict {
                case .pass: passed += 1
                case .drop: dropped += 1
                case .transmit: refused += 1
                }
                recycleChain(segments(offset), count: descriptor.segmentCount)
                // Out of the transmit pass below, which walks the rest.
                descriptors[offset].verdict = .drop
                continue
            }
            switch descriptor.verdict {
            case .pass: passed += 1; recycle(descriptor.address)
            case .drop: dropped += 1; recycle(descriptor.address)
            case .transmit: transmit += 1
            }
        }
        counters.add(.passed, passed)
        counters.add(.dropped, dropped)
        counters.add(.transmitFailed, refused)
        if transmit > 0 { self.transmit(descriptors, count: count, wanted: transmit) }
    }

    /// Descriptors back from the worker, with their chains' segments when
    /// the segment ring holds any (published before the descriptors).
    private func finishReturned(_ descriptors: UnsafeMutablePointer<PacketDescriptor>, count: Int) {
        guard multiBuffer, let segmentsFromWorker, !segmentsFromWorker.isEmpty else {
            finish(descriptors, count: count)
            return
        }
        let chain = returnedChain
        finishChained(descriptors, count: count) { offset in
            let wanted = descriptors[offset].segmentCount
            var taken = 0
            while taken < wanted {
                let got = segmentsFromWorker.dequeue(into: UnsafeMutableBufferPointer(start: chain + taken, count: wanted - taken))
                if got == 0 { break }
                taken += got
            }
            // Never short (published first); were it, the missing frames are
            // left out rather than recycled twice.
            for missing in taken..<wanted { chain[missing] = PacketSegment(address: UInt64.max, length: 0) }
            return chain
        }
    }

    /// Takes back every frame of a chain.
    private func recycleChain(_ segments: UnsafeMutablePointer<PacketSegment>, count: Int) {
        for segment in 0..<count where segments[segment].address != UInt64.max {
            recycle(segments[segment].address)
        }
    }

    /// The free-frame stack held in locals for a loop over a batch; `store`
    /// writes it back.
    private struct FreeFrameStack {
        let frames: UnsafeMutablePointer<UInt64>
        let capacity: Int, umemSize: UInt64, frameMask: UInt64
        var count: Int
        var invalid = 0

        @inline(__always)
        init(_ runner: QueueRunner) {
            frames = runner.freeFrames
            capacity = runner.frameCount
            umemSize = runner.umemSize
            frameMask = runner.frameMask
            count = runner.freeCount
        }

        /// As `recycle`: a frame outside the UMEM, or one more than the
        /// stack holds (a module rewrote an address), is refused and counted.
        @inline(__always)
        mutating func push(_ address: UInt64) {
            guard count < capacity, address < umemSize else {
                invalid &+= 1
                return
            }
            frames[count] = address & frameMask
            count &+= 1
        }

        @inline(__always)
        func store(into runner: QueueRunner) {
            runner.freeCount = count
            runner.counters.add(.invalidFrames, invalid)
        }
    }

    private func transmit(_ descriptors: UnsafeMutablePointer<PacketDescriptor>, count: Int, wanted: Int) {
        var index: UInt32 = 0
        let reserved = Int(xsk_ring_prod__reserve(socket.tx, UInt32(wanted), &index))
        var placed = 0
        for offset in 0..<count where descriptors[offset].verdict == .transmit {
            if placed < reserved {
                let slot = xsk_ring_prod__tx_desc(socket.tx, index &+ UInt32(placed))!
                slot.pointee.addr = descriptors[offset].address
                slot.pointee.len = descriptors[offset].length
                slot.pointee.options = 0
                placed += 1
            } else {
                recycle(descriptors[offset].address)
            }
        }
        if reserved > 0 {
            xsk_ring_prod__submit(socket.tx, UInt32(reserved))
            // Without need_wakeup the flag never says so, and copy mode sends
            // only when kicked; busy polling drives TX by its sendto kicks.
            if alwaysKickTransmit || xsk_ring_prod__needs_wakeup(socket.tx) != 0 {
                _ = sendto(socket.fileDescriptor, nil, 0, Int32(MSG_DONTWAIT), nil, 0)
            }
        }
        counters.add(.transmitted, reserved)
        counters.add(.transmitFailed, wanted - reserved)
    }

    private func reclaimCompletions() {
        var index: UInt32 = 0
        let count = Int(xsk_ring_cons__peek(socket.completion, UInt32(batchSize), &index))
        guard count > 0 else { return }
        for offset in 0..<count {
            recycle(xsk_ring_cons__comp_addr(socket.completion, index &+ UInt32(offset))!.pointee)
        }
        xsk_ring_cons__release(socket.completion, UInt32(count))
    }

    /// Takes a frame back. A frame can only come back once, so the stack
    /// cannot overflow, unless a module rewrote a descriptor's address: then
    /// the frame is refused (and counted) rather than written past the stack.
    @inline(__always)
    private func recycle(_ address: UInt64) {
        guard freeCount < frameCount, address < umemSize else {
            counters.add(.invalidFrames, 1)
            return
        }
        freeFrames[freeCount] = address & frameMask
        freeCount += 1
    }

    private func refillFillRing() {
        guard freeCount > 0 else { return }
        var index: UInt32 = 0
        // libxdp's reserve is all or nothing: ask for what fits, or a fill
        // ring with a few free slots would get none and the driver starve.
        let want = min(UInt32(min(freeCount, Int(socket.geometry.fillRingSize))),
                       xsk_prod_nb_free(socket.fill, UInt32(freeCount)))
        guard want > 0 else { return }
        let reserved = xsk_ring_prod__reserve(socket.fill, want, &index)
        guard reserved > 0 else { return }
        // Ring and stack in locals: see finish().
        let ring = XSKRingSlots(fill: socket.fill)
        let stack = freeFrames
        var free = freeCount
        for offset in 0..<reserved {
            free &-= 1
            ring[index &+ offset] = stack[free]
        }
        freeCount = free
        xsk_ring_prod__submit(socket.fill, reserved)
    }

    /// Nothing to do: sleep in poll() on the socket (the kernel wakes us via
    /// need-wakeup), the worker's return doorbell and the stop bell.
    private func idle(_ fromWorker: SPSCRing<PacketDescriptor>?, _ returnBell: Doorbell?) {
        var mayWaitForWorker = true
        if let fromWorker { mayWaitForWorker = fromWorker.prepareToSleep() }
        if mayWaitForWorker {
            pollSet[0] = pollfd(fd: socket.fileDescriptor, events: Int16(POLLIN), revents: 0)
            pollSet[1] = pollfd(fd: stopBell.fileDescriptor, events: Int16(POLLIN), revents: 0)
            // A negative descriptor is ignored by poll(): inline mode has no return bell.
            pollSet[2] = pollfd(fd: returnBell?.fileDescriptor ?? -1, events: Int16(POLLIN), revents: 0)
            _ = poll(pollSet, 3, config.pollTimeoutMilliseconds)
            if pollSet[2].revents != 0 { returnBell?.reset() }
        }
        fromWorker?.cancelSleep()
    }

    /// After stop: take back what the worker still holds so counts add up.
    private func drainAfterStop() {
        guard let fromWorker else { return }
        // The worker may still be finishing a batch: its frames come back after it exits.
        _ = workerExited.wait(timeout: .now() + 5)
        var buffer = [PacketDescriptor](repeating: PacketDescriptor(address: 0, length: 0, queue: 0), count: batchSize)
        buffer.withUnsafeMutableBufferPointer { buffer in
            while true {
                let count = fromWorker.dequeue(into: buffer)
                if count == 0 { break }
                finishReturned(buffer.baseAddress!, count: count)
            }
        }
    }

    // MARK: Worker thread

    /// How long a busy worker waits for more work before it checks again:
    /// the most a packet waits in the hand-off ring under steady traffic.
    static let workerDozeMilliseconds: Int32 = 1

    private func workerLoop() {
        defer { workerExited.signal() }
        guard let toWorker, let fromWorker, let workerBell, let returnBell, let processor = workerProcessor else { return }
        let segmentsToWorker = segmentsToWorker, segmentsFromWorker = segmentsFromWorker
        let buffer = UnsafeMutableBufferPointer(start: processor.descriptors, count: processor.capacity)
        var worked = false
        while true {
            let count = toWorker.dequeue(into: buffer)
            if count == 0 {
                if stopping.load(ordering: .acquiring) { break }
                if worked {
                    // Traffic is flowing: doze for a millisecond without asking
                    // to be woken, and take what arrived meanwhile in one go.
                    // Woken per RX batch instead, the worker cost a sleep and a
                    // wake-up per ~100 packets (measured: 20 wake-ups per 1,000
                    // packets at 1 Mpps, most of a pipelined packet's CPU time).
                    worked = false
                    workerBell.wait(timeoutMilliseconds: Self.workerDozeMilliseconds)
                    continue
                }
                // Nothing came during a doze: sleep until the RX thread rings.
                if toWorker.prepareToSleep() { workerBell.wait(timeoutMilliseconds: config.pollTimeoutMilliseconds) }
                toWorker.cancelSleep()
                continue
            }
            worked = true
            // The segment ring holds something only if a chain was handed over.
            var segments = 0
            if let segmentsToWorker, !segmentsToWorker.isEmpty {
                segments = processor.takeSegments(from: segmentsToWorker, count: count)
            }
            counters.add(.malformed, processor.run(count: count, chained: segments > 0))
            if segments > 0, let segmentsFromWorker {
                let back = segmentsFromWorker.enqueue(from: UnsafeBufferPointer(start: processor.segments, count: segments))
                precondition(back == segments, "segment ring sized below the frame count")
            }
            // Cannot come back short: the ring holds every frame of the UMEM.
            let returned = fromWorker.enqueue(from: UnsafeBufferPointer(start: processor.descriptors, count: count))
            precondition(returned == count, "return ring sized below the frame count")
            if fromWorker.takeWakeupRequest() { returnBell.ring() }
        }
    }
}

/// The slow path of an RX peek that holds a multi-buffer chain (a frame
/// with XDP_PKT_CONTD is followed by the rest of its packet): rebuilds the
/// batch as one descriptor per packet, the chains' frames in the processor's
/// `segments`. Consumes from the RX ring only whole packets: a chain the
/// peek cut off is given back (cancelled) and read again whole by the next
/// peek, unless it began the peek: then the rest of it is peeked now. A
/// chain longer than `PacketDescriptor.maximumSegments` is refused and
/// counted, its frames (up to the one that ends it, batches later maybe)
/// listed in `refused` for the caller to recycle.
struct ChainAssembler {
    /// Inside a refused chain: its frames are refused as they come.
    private(set) var discarding = false
    /// The frames the last `assemble` refused (`Result.refused` of them).
    let refused: UnsafeMutablePointer<UInt64>

    init(batchSize: Int) {
        refused = .allocate(capacity: batchSize + PacketDescriptor.maximumSegments)
    }

    func deallocate() { refused.deallocate() }

    struct Result: Equatable {
        var packets = 0, bytes = 0, chains = 0, invalid = 0, refused = 0
    }

    /// `peeked` entries from `ringIndex` are peeked (not released) on `ring`.
    mutating func assemble(
        _ ring: UnsafeMutablePointer<xsk_ring_cons>, ringIndex: UInt32, peeked: Int, queue: UInt16,
        into processor: BatchProcessor
    ) -> Result {
        var result = Result()
        var available = peeked, consumed = 0, entry = 0
        var used = 0  // segments of complete chains
        var pending = 0, pendingLength = 0  // the chain being read
        while entry < available && result.packets < processor.capacity {
            let descriptor = xsk_ring_cons__rx_desc(ring, ringIndex &+ UInt32(entry))!.pointee
            entry += 1
            let continues = descriptor.options & XSKSocket.packetContinues != 0
            if discarding {
                refused[result.refused] = descriptor.addr
                result.refused += 1
                discarding = continues
                consumed = entry
                continue
            }
            guard continues || pending > 0 else {
                processor.descriptors[result.packets] = PacketDescriptor(address: descriptor.addr, length: descriptor.len, queue: queue)
                result.packets += 1
                result.bytes &+= Int(descriptor.len)
                consumed = entry
                continue
            }
            processor.segments[used + pending] = PacketSegment(address: descriptor.addr, length: descriptor.len)
            pending += 1
            pendingLength &+= Int(descriptor.len)
            if !continues {
                processor.firstSegment[result.packets] = Int32(truncatingIfNeeded: used)
                processor.descriptors[result.packets] = PacketDescriptor(
                    address: processor.segments[used].address, length: UInt32(truncatingIfNeeded: pendingLength),
                    queue: queue, segments: pending)
                result.packets += 1
                result.chains += 1
                result.bytes &+= pendingLength
                used += pending
                pending = 0; pendingLength = 0
                consumed = entry
            } else if pending == PacketDescriptor.maximumSegments {
                for segment in 0..<pending { refused[result.refused + segment] = processor.segments[used + segment].address }
                result.refused += pending
                result.invalid += 1
                pending = 0; pendingLength = 0
                discarding = true
                consumed = entry
            } else if entry == available && result.packets == 0 && available < peeked + PacketDescriptor.maximumSegments {
                // A chain longer than the batch: peek the rest of it (the
                // ring's entries are contiguous, following this peek's).
                var more: UInt32 = 0
                available += Int(xsk_ring_cons__peek(ring, UInt32(PacketDescriptor.maximumSegments - pending), &more))
            }
        }
        // Entries of a cut-off chain go back to the ring, to be peeked again.
        if available > consumed { xsk_ring_cons__cancel(ring, UInt32(available - consumed)) }
        if consumed > 0 { xsk_ring_cons__release(ring, UInt32(consumed)) }
        return result
    }
}

extension Int {
    var nextPowerOfTwo: Int {
        guard self > 1 else { return 1 }
        return 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount)
    }
}
