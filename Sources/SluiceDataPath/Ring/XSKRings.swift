import CXDP

/// The slots of one of libxdp's rings, for the loops over a batch.
///
/// libxdp's accessors (`xsk_ring_prod__fill_addr`, `xsk_ring_cons__rx_desc`,
/// ...) reload the ring's base and mask from its struct for every slot: in
/// Swift those loads cannot be hoisted past the stores of the loop (they may
/// alias, as far as the optimizer knows), which cost instructions per packet.
/// A view takes base and mask once, from libxdp's own accessor and struct;
/// reserving, submitting, peeking and releasing stay libxdp's.
struct XSKRingSlots<Slot> {
    let base: UnsafeMutablePointer<Slot>
    let mask: UInt32

    @inline(__always)
    subscript(index: UInt32) -> Slot {
        get { base[Int(truncatingIfNeeded: index & mask)] }
        nonmutating set { base[Int(truncatingIfNeeded: index & mask)] = newValue }
    }
}

extension XSKRingSlots where Slot == UInt64 {
    /// The fill ring's frame addresses.
    @inline(__always)
    init(fill ring: UnsafeMutablePointer<xsk_ring_prod>) {
        self.init(base: xsk_ring_prod__fill_addr(ring, 0)!, mask: ring.pointee.mask)
    }
}

extension XSKRingSlots where Slot == xdp_desc {
    /// The RX ring's descriptors (read only: the kernel produces them).
    @inline(__always)
    init(rx ring: UnsafeMutablePointer<xsk_ring_cons>) {
        self.init(base: UnsafeMutablePointer(mutating: xsk_ring_cons__rx_desc(ring, 0)!), mask: ring.pointee.mask)
    }
}
