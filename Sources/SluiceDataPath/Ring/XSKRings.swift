import CXDP

// Views of libxdp's rings for the loops over a batch. libxdp's accessors
// (xsk_ring_prod__fill_addr, xsk_ring_cons__rx_desc, ...) reload the ring's
// base and mask from its struct for every slot: in Swift the loads cannot be
// hoisted past the stores into the ring (they may alias, as far as the
// optimizer knows), which cost several instructions per packet. These take
// base and mask once, from libxdp's own accessors and struct; reserving,
// submitting, peeking and releasing stay libxdp's.

/// The fill ring's address slots.
struct XSKFillRing {
    let slots: UnsafeMutablePointer<UInt64>
    let mask: UInt32

    @inline(__always)
    init(_ ring: UnsafeMutablePointer<xsk_ring_prod>) {
        slots = xsk_ring_prod__fill_addr(ring, 0)!
        mask = ring.pointee.mask
    }

    @inline(__always)
    subscript(index: UInt32) -> UInt64 {
        get { slots[Int(truncatingIfNeeded: index & mask)] }
        nonmutating set { slots[Int(truncatingIfNeeded: index & mask)] = newValue }
    }
}

/// The RX ring's descriptors.
struct XSKRxRing {
    let descriptors: UnsafePointer<xdp_desc>
    let mask: UInt32

    @inline(__always)
    init(_ ring: UnsafeMutablePointer<xsk_ring_cons>) {
        descriptors = xsk_ring_cons__rx_desc(ring, 0)!
        mask = ring.pointee.mask
    }

    @inline(__always)
    subscript(index: UInt32) -> xdp_desc {
        descriptors[Int(truncatingIfNeeded: index & mask)]
    }
}
