import SluiceProtocol

#if canImport(Glibc)
import Glibc
#endif
import CXDP
import SystemPackage

/// Frame and ring geometry of one UMEM and its socket.
public struct XSKGeometry: Sendable, Codable, Equatable {
    public var frameSize: UInt32 = 4096
    public var frameCount: UInt32 = 4096
    public var fillRingSize: UInt32 = 2048
    public var completionRingSize: UInt32 = 2048
    public var rxRingSize: UInt32 = 2048
    public var txRingSize: UInt32 = 2048

    public init() {}

    func validate() throws {
        guard frameSize == 2048 || frameSize == 4096 else {
            throw DataPathError("frame size \(frameSize) is not supported; use 2048 or 4096")
        }
        guard frameCount >= 64, frameCount <= 1 << 20 else {
            throw DataPathError("frame count \(frameCount) is outside 64...\(1 << 20)")
        }
        for (name, size) in [("fill", fillRingSize), ("completion", completionRingSize),
                             ("rx", rxRingSize), ("tx", txRingSize)] {
            guard size >= 64, size <= 1 << 16, size & (size - 1) == 0 else {
                throw DataPathError("\(name) ring size \(size) is not a power of two in 64...65536")
            }
        }
    }
}

/// The way a socket ended up bound, and why.
public struct XSKBinding: Sendable, Codable, Equatable {
    public var zeroCopy: Bool
    /// Why `auto` fell back to copy mode (nil when it did not).
    public var fallbackReason: String?
    /// Bound with XDP_USE_SG: packets larger than a frame arrive as chains.
    public var multiBuffer = false
    /// Why a socket asked for multi-buffer was bound without (nil otherwise).
    public var multiBufferRefusal: String?
}

/// One UMEM and one AF_XDP socket on (interface, queue), through libxdp.
/// The rings libxdp fills in live at fixed addresses (libxdp keeps pointers
/// to the fill and completion rings).
final class XSKSocket {
    let interface: String
    let queue: UInt32
    let geometry: XSKGeometry
    let area: UnsafeMutableRawPointer
    let areaSize: Int
    let fill = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
    let completion = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    let rx = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    let tx = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
    private var umem: OpaquePointer?
    private var socket: OpaquePointer?
    private(set) var binding = XSKBinding(zeroCopy: false)
    var fileDescriptor: Int32 { xsk_socket__fd(socket) }
    /// Bound with XDP_USE_NEED_WAKEUP: the kernel says (ring flags) when it
    /// must be kicked. Without it (before 5.4) the flags read 0, so a
    /// transmitter must kick after every batch instead of when asked.
    let needWakeup: Bool
    /// Bound with XDP_USE_SG: descriptors with `packetContinues` set are
    /// followed by the rest of their packet.
    var multiBuffer: Bool { binding.multiBuffer }

    /// XDP_USE_SG (linux/if_xdp.h since 6.6; Debian 12's 6.1 headers lack it):
    /// a bind flag that lets the socket receive a packet over several frames.
    static let useScatterGather: UInt16 = 1 << 4
    /// XDP_PKT_CONTD (since 6.6): in `xdp_desc.options`, more frames of this
    /// packet follow.
    static let packetContinues: UInt32 = 1
    /// XDP_PACKET_HEADROOM: what the kernel keeps in front of the data of
    /// every frame it fills (copy and zero-copy mode alike).
    static let kernelHeadroom = 256

    /// Whether sockets bind with XDP_USE_NEED_WAKEUP: unless the probe found
    /// the kernel without it (that bind would fail with EINVAL). Unknown
    /// (the probe could not open a socket) binds with it, as every
    /// supported kernel has it.
    static let kernelHasNeedWakeup = KernelFeatures.detected(.xskNeedWakeup).state != .missing

    /// Binds in zero-copy or copy mode as asked; `auto` is the pipeline's
    /// business, since a fallback may bind another queue (ChannelPlan).
    ///
    /// `multiBuffer` binds with XDP_USE_SG. A kernel before 6.6 (EINVAL) or a
    /// zero-copy driver without multi-buffer (EOPNOTSUPP) refuses that
    /// flag: `requireMultiBuffer` then fails, else the socket binds without
    /// it and `binding.multiBufferRefusal` says why.
    init(
        interface: String, queue: UInt32, geometry: XSKGeometry, zeroCopy: Bool, driver: String,
        needWakeup: Bool = XSKSocket.kernelHasNeedWakeup, multiBuffer: Bool = false, requireMultiBuffer: Bool = false
    ) throws {
        try geometry.validate()
        self.needWakeup = needWakeup
        self.interface = interface
        self.queue = queue
        self.geometry = geometry
        areaSize = Int(geometry.frameSize) * Int(geometry.frameCount)
        let mapped = mmap(nil, areaSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            let errno = Errno(rawValue: Glibc.errno)
            fill.deallocate(); completion.deallocate(); rx.deallocate(); tx.deallocate()
            throw DataPathError("allocating a \(areaSize)-byte UMEM for \(interface) queue \(queue)", errno: errno)
        }
        area = mapped
        // libxdp leaves some cached indices unset (the completion ring's
        // cached_prod/cached_cons): start from zeroed structs, as its callers
        // that calloc do, or a peek of the completion ring returns garbage
        // entries and frames the kernel still owns come back twice.
        zeroRings()
        // A throw from here on runs deinit (every property is set), which frees it all.
        do {
            try createWaitingForTheQueue(zeroCopy: zeroCopy, multiBuffer: multiBuffer)
        } catch let error as DataPathError
            where multiBuffer && (error.errno == .invalidArgument || error.errno == .notSupported) {
            let why = error.errno == .invalidArgument
                ? "this kernel has no AF_XDP multi-buffer (XDP_USE_SG came with Linux 6.6; the bind said EINVAL)"
                : "\(driver) has no AF_XDP multi-buffer in \(zeroCopy ? "zero-copy" : "copy") mode (the bind said EOPNOTSUPP)"
            destroy()
            zeroRings()
            // Without the flag first: a zero-copy bind the driver refuses
            // altogether is a zero-copy refusal, whatever multi-buffer says.
            try bindWithoutMultiBuffer(zeroCopy: zeroCopy, driver: driver)
            if requireMultiBuffer {
                throw DataPathError("multi_buffer = \"on\" for \(interface) queue \(queue), but \(why)", errno: error.errno)
            }
            binding.multiBufferRefusal = why
        } catch let error as DataPathError where zeroCopy {
            throw DataPathError("\(driver) cannot do AF_XDP zero-copy on \(interface) queue \(queue)", errno: error.errno)
        }
    }

    private func bindWithoutMultiBuffer(zeroCopy: Bool, driver: String) throws {
        do {
            try createWaitingForTheQueue(zeroCopy: zeroCopy, multiBuffer: false)
        } catch let error as DataPathError where zeroCopy {
            throw DataPathError("\(driver) cannot do AF_XDP zero-copy on \(interface) queue \(queue)", errno: error.errno)
        }
    }

    /// Why this copy-mode socket is not the zero-copy one that was tried
    /// first (the pipeline tries zero-copy on the queue the plugin gave for it).
    func noteFallback(_ reason: String) { binding.fallbackReason = reason }

    /// The ring structs zeroed, before every xsk_umem__create (trivial C structs).
    private func zeroRings() {
        fill.initialize(to: xsk_ring_prod())
        completion.initialize(to: xsk_ring_cons())
        rx.initialize(to: xsk_ring_cons())
        tx.initialize(to: xsk_ring_prod())
    }

    /// How long a bind waits for a queue whose previous socket is still
    /// being released. The kernel frees a closed socket's hold on its queue
    /// later, on a work queue that needs the RTNL lock (`xp_release_deferred`),
    /// so a pipeline bound again at once (a rebind after a channel change,
    /// `pipeline.stop` then `pipeline.start`) can meet EBUSY for a few
    /// milliseconds — longer on a loaded machine. A socket of another
    /// process still holding the queue gets the EBUSY after this wait.
    static let busyQueueWait: Duration = .seconds(2)

    private func createWaitingForTheQueue(zeroCopy: Bool, multiBuffer: Bool) throws {
        let clock = ContinuousClock()
        let deadline = clock.now + Self.busyQueueWait
        var pauseMicroseconds: UInt32 = 1_000
        while true {
            do {
                return try create(zeroCopy: zeroCopy, multiBuffer: multiBuffer)
            } catch let error as DataPathError where error.errno == .resourceBusy && clock.now < deadline {
                // libxdp leaves the UMEM registered to a socket it could not bind: start over.
                destroy()
                zeroRings()
                usleep(pauseMicroseconds)
                pauseMicroseconds = min(pauseMicroseconds * 2, 50_000)
            } catch let error as DataPathError where error.errno == .resourceBusy {
                throw DataPathError(
                    "\(error.message) (still busy after \(Self.busyQueueWait): another AF_XDP socket, maybe of another process, is bound to that queue)",
                    errno: error.errno)
            }
        }
    }

    private func create(zeroCopy: Bool, multiBuffer: Bool) throws {
        var umemConfig = xsk_umem_config(
            fill_size: geometry.fillRingSize, comp_size: geometry.completionRingSize,
            frame_size: geometry.frameSize, frame_headroom: 0, flags: 0)
        var umem: OpaquePointer?
        let umemResult = xsk_umem__create(&umem, area, UInt64(areaSize), fill, completion, &umemConfig)
        guard umemResult == 0, let umem else {
            throw DataPathError(
                "registering a \(areaSize)-byte UMEM for \(interface) queue \(queue) (needs CAP_IPC_LOCK or a memlock limit above it)",
                negativeErrno: umemResult)
        }
        self.umem = umem
        var config = xsk_socket_config()
        config.rx_size = geometry.rxRingSize
        config.tx_size = geometry.txRingSize
        // Sluice loads its own program (XDPProgram); libxdp must not load its default one.
        config.libxdp_flags = UInt32(XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD)
        config.bind_flags = (needWakeup ? UInt16(XDP_USE_NEED_WAKEUP) : 0) | UInt16(zeroCopy ? XDP_ZEROCOPY : XDP_COPY)
            | (multiBuffer ? Self.useScatterGather : 0)
        var socket: OpaquePointer?
        let result = xsk_socket__create(&socket, interface, queue, umem, rx, tx, &config)
        guard result == 0, let socket else {
            throw DataPathError(
                "binding an AF_XDP socket to \(interface) queue \(queue) in \(zeroCopy ? "zero-copy" : "copy") mode"
                    + (multiBuffer ? " with multi-buffer (XDP_USE_SG)" : ""),
                negativeErrno: result)
        }
        self.socket = socket
        binding.zeroCopy = zeroCopy
        binding.multiBuffer = multiBuffer
    }

    private func destroy() {
        if let socket { xsk_socket__delete(socket) }
        socket = nil
        if let umem { _ = xsk_umem__delete(umem) }
        umem = nil
    }

    /// Preferred busy polling (af_xdp.rst, "Busy-polling"): the RX thread's
    /// recvfrom/sendto kicks run the queue's NAPI, and with the device's
    /// napi_defer_hard_irqs the interrupt stays off while they do. Raising
    /// SO_BUSY_POLL or the budget above the sysctls needs CAP_NET_ADMIN.
    func enableBusyPoll(_ settings: DataPathConfig.BusyPoll) throws {
        for (option, name, value) in [
            (KernelFeatures.soPreferBusyPoll, "SO_PREFER_BUSY_POLL", Int32(1)),
            (Self.soBusyPoll, "SO_BUSY_POLL", settings.microseconds),
            (KernelFeatures.soBusyPollBudget, "SO_BUSY_POLL_BUDGET", settings.budget),
        ] {
            var value = value
            guard setsockopt(fileDescriptor, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                throw DataPathError(
                    "setsockopt(\(name), \(value)) on the AF_XDP socket of \(interface) queue \(queue)",
                    errno: Errno(rawValue: Glibc.errno))
            }
        }
    }

    static let soBusyPoll: Int32 = 46

    /// The kernel's drop counters for this socket (`XDP_STATISTICS`).
    func kernelStatistics() -> KernelSocketStatistics {
        var statistics = xdp_statistics()
        var length = socklen_t(MemoryLayout<xdp_statistics>.size)
        guard getsockopt(fileDescriptor, 283 /* SOL_XDP */, XDP_STATISTICS, &statistics, &length) == 0 else {
            return KernelSocketStatistics()
        }
        return KernelSocketStatistics(
            rxDropped: statistics.rx_dropped, rxInvalidDescriptors: statistics.rx_invalid_descs,
            txInvalidDescriptors: statistics.tx_invalid_descs, rxRingFull: statistics.rx_ring_full,
            fillRingEmpty: statistics.rx_fill_ring_empty_descs, txRingEmpty: statistics.tx_ring_empty_descs)
    }

    deinit {
        destroy()
        munmap(area, areaSize)
        fill.deallocate(); completion.deallocate(); rx.deallocate(); tx.deallocate()
    }
}
