#ifndef SLUICE_PEER_H
#define SLUICE_PEER_H
#include <sys/types.h>
#include <sys/socket.h>

/* Fixed-size buffer for getsockopt(SO_PEERGROUPS). The kernel fills it with
 * the peer's supplementary groups in ascending order and fails with ERANGE
 * when it is too small; callers fall back to getgrouplist() then. */
#define SLUICE_PEER_GROUPS_MAX 256
struct sluice_peer_groups {
    gid_t gids[SLUICE_PEER_GROUPS_MAX];
};

/* struct ucred without _GNU_SOURCE: the SO_PEERCRED answer. */
struct sluice_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* The constants Swift's Glibc module does not import on every libc. */
static inline int sluice_so_peercred(void) { return SO_PEERCRED; }
static inline int sluice_so_peergroups(void) {
#ifdef SO_PEERGROUPS
    return SO_PEERGROUPS;
#else
    return 59;
#endif
}
#endif
