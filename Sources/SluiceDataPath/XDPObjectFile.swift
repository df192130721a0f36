import Foundation

/// Sluice's XDP object as a file, for tools that load from disk
/// (`ip link set dev IF xdp obj FILE`), e.g. in tests and `doctor`.
public enum XDPObjectFile {
    public static func write(to url: URL) throws {
        guard let bytes = Data(base64Encoded: EmbeddedBPF.sluice_xdp) else {
            throw DataPathError("the embedded XDP object is not valid base64 (build problem)")
        }
        try bytes.write(to: url)
    }
}
