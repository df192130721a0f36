import CSluiceShims

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a control connection, from the kernel
/// (`SO_PEERCRED`, `SO_PEERGROUPS`), and the access level that follows.
public struct PeerIdentity: Sendable, Equatable, Codable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups; `SO_PEERCRED` alone gives only the effective gid.
    public var groups: [UInt32]
    public var level: AccessLevel

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32], adminGroup: UInt32?) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.level = PeerIdentity.level(uid: uid, gid: gid, groups: groups, adminGroup: adminGroup)
    }

    /// Root is admin; so is a member (primary or supplementary) of the admin
    /// group; anyone else who can connect reads.
    public static func level(uid: UInt32, gid: UInt32, groups: [UInt32], adminGroup: UInt32?) -> AccessLevel {
        if uid == 0 { return .admin }
        if let adminGroup, gid == adminGroup || groups.contains(adminGroup) { return .admin }
        return .read
    }

    /// The in-process identity, for requests that do not come over a socket.
    public static func currentProcess(adminGroup: UInt32? = nil) -> PeerIdentity {
        PeerIdentity(pid: getpid(), uid: geteuid(), gid: getegid(), groups: [], adminGroup: adminGroup)
    }

    /// Decodes a zero-filled `SO_PEERGROUPS` buffer. The kernel returns the
    /// groups sorted ascending, so after an optional leading 0 (root's group)
    /// the list ends at the first 0.
    static func groups(from buffer: sluice_peer_groups) -> [UInt32] {
        withUnsafeBytes(of: buffer.gids) { raw in
            let gids = raw.bindMemory(to: gid_t.self)
            var result: [UInt32] = []
            for (index, gid) in gids.enumerated() {
                if gid == 0 {
                    if index == 0, gids.count > 1, gids[1] != 0 { result.append(0); continue }
                    break
                }
                result.append(gid)
            }
            return result
        }
    }
}
