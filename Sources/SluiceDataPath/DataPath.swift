// SluiceDataPath: the receive side of Sluice.
//
// Per bound queue one UMEM and one AF_XDP socket (libxdp `xsk_*`), Sluice's
// own XDP program redirecting to an XSKMAP keyed as the driver plugin says,
// an RX thread per socket and, in pipelined mode, a worker thread fed through
// a lock-free single-producer single-consumer ring. Nothing here runs on
// Swift concurrency's cooperative pool or on a NIO event loop.
