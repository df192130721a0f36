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

    init(modules: [PacketModule], umem: UnsafeMutableRawPointer, capacity: Int) {
        self.modules = ContiguousArray(modules)
        self.umem = umem
        self.capacity = capacity
        descriptors = .allocate(capacity: capacity)
        descriptors.initialize(repeating: PacketDescriptor(address: 0, length: 0, queue: 0), count: capacity)
        headers = .allocate(capacity: capacity)
        headers.initialize(repeating: PacketHeaders(), count: capacity)
    }

    deinit {
        descriptors.deallocate()
        headers.deallocate()
    }

    /// Parses and runs every module over `descriptors[0..<count]`; returns
    /// the malformed count (0 without modules: nothing is parsed then).
    @inline(__always)
    func run(count: Int) -> Int {
        // No module reads the headers: parsing would only miss the cache on
        // every frame (measured: 44% of an inline RX thread's time).
        guard count > 0, !modules.isEmpty else { return 0 }
        let batch = PacketBatch(umem: umem, descriptors: descriptors, headers: headers, count: count)
        let malformed = HeaderParser.parse(batch)
        // Borrowed from the buffer: `for module in modules` copied (retained)
        // each module per batch.
        modules.withUnsafeBufferPointer { chain in
            for index in chain.indices { chain[index].process(batch) }
        }
        return malformed
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

    init(binding: ChannelBinding, socket: XSKSocket, config: DataPathConfig, modules: [PacketModule]) throws {
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
        switch config.mode {
        case .inline:
            rxProcessor = BatchProcessor(modules: modules, umem: socket.area, capacity: batchSize)
            workerProcessor = nil
            toWorker = nil; fromWorker = nil; workerBell = nil; returnBell = nil
        case .pipelined:
            rxProcessor = BatchProcessor(modules: [], umem: socket.area, capacity: batchSize)
            workerProcessor = BatchProcessor(modules: modules, umem: socket.area, capacity: batchSize)
            toWorker = try SPSCRing(capacity: config.handoffRingSize)
            // Every frame can be in flight back at once: this ring never fills.
            fromWorker = try SPSCRing(capacity: max(2, frames.nextPowerOfTwo))
            workerBell = try Doorbell()
            returnBell = try Doorbell()
        }
        refillFillRing()
    }

    deinit {
        freeFrames.deallocate()
        pollSet.deallocate()
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
                    if count > 0 { finish(returnBuffer.baseAddress!, count: count); progress = true }
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
        let count = Int(xsk_ring_cons__peek(socket.rx, UInt32(batchSize), &index))
        guard count > 0 else { return 0 }
        let queue = UInt16(truncatingIfNeeded: binding.bindQueue)
        var bytes = 0
        let ring = XSKRingSlots(rx: socket.rx), descriptors = processor.descriptors
        for offset in 0..<count {
            let descriptor = ring[index &+ UInt32(truncatingIfNeeded: offset)]
            descriptors[offset] = PacketDescriptor(address: descriptor.addr, length: descriptor.len, queue: queue)
            bytes &+= Int(descriptor.len)
        }
        xsk_ring_cons__release(socket.rx, UInt32(count))
        counters.add(.rxPackets, count)
        counters.add(.rxBytes, bytes)
        if let toWorker, let workerBell {
            let handed = toWorker.enqueue(from: UnsafeBufferPointer(start: processor.descriptors, count: count))
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
                for offset in handed..<count { recycle(processor.descriptors[offset].address) }
            }
        } else {
            counters.add(.malformed, processor.run(count: count))
            finish(processor.descriptors, count: count)
        }
        return count
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
                finish(buffer.baseAddress!, count: count)
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
            counters.add(.malformed, processor.run(count: count))
            // Cannot come back short: the ring holds every frame of the UMEM.
            let returned = fromWorker.enqueue(from: UnsafeBufferPointer(start: processor.descriptors, count: count))
            precondition(returned == count, "return ring sized below the frame count")
            if fromWorker.takeWakeupRequest() { returnBell.ring() }
        }
    }
}

extension Int {
    var nextPowerOfTwo: Int {
        guard self > 1 else { return 1 }
        return 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount)
    }
}
