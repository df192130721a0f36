#ifndef SLUICE_ETHTOOL_H
#define SLUICE_ETHTOOL_H
/* Helpers for the SIOCETHTOOL structures Swift cannot express directly:
 * unions (struct ifreq, ethtool_flow_union), anonymous unions
 * (ethtool_rxnfc.rule_cnt) and flexible array members (gstrings, gfeatures,
 * sfeatures, stats, rxnfc.rule_locs, rxfh.rss_config).
 *
 * Buffers are owned by the caller (Swift allocates `*_size()` bytes, zeroed,
 * aligned to 8) so nothing here allocates. Every ioctl goes through
 * sluice_ethtool_ioctl, which returns -1 with errno like ioctl(2), so the
 * Swift side can retry EINTR and attach the operation's name. */
#include <stddef.h>
#include <stdint.h>

/* ioctl(fd, SIOCETHTOOL) on interface `ifname` with `data` as ifr_data.
 * Returns ioctl's result (>= 0; SFEATURES returns flags) or -1 with errno.
 * Fails with ENAMETOOLONG when ifname does not fit IFNAMSIZ. */
int sluice_ethtool_ioctl(int fd, const char *ifname, void *data);

/* ETHTOOL_GDRVINFO (ethtool -i). */
struct sluice_driver_info {
    char driver[32], version[32], firmware_version[32], bus_info[32];
    uint32_t statistics_count, private_flags_count;
};
/* 0, or -1 with errno like sluice_ethtool_ioctl. */
int sluice_ethtool_driver_info(int fd, const char *ifname, struct sluice_driver_info *info);

/* ETHTOOL_GSSET_INFO for one string set: the number of strings, or -1 with
 * errno (EOPNOTSUPP when the driver has no such set). */
int sluice_ethtool_sset_count(int fd, const char *ifname, uint32_t set, uint32_t *count);

/* struct ethtool_gstrings + count * ETH_GSTRING_LEN */
size_t sluice_gstrings_size(uint32_t count);
void sluice_gstrings_init(void *buf, uint32_t set, uint32_t count);
uint32_t sluice_gstrings_count(const void *buf);
/* The i-th name: ETH_GSTRING_LEN bytes, NUL-terminated unless full. */
const char *sluice_gstrings_at(const void *buf, uint32_t i);
size_t sluice_gstring_len(void);

/* struct ethtool_gfeatures / ethtool_sfeatures with `blocks` 32-bit blocks. */
size_t sluice_gfeatures_size(uint32_t blocks);
void sluice_gfeatures_init(void *buf, uint32_t blocks);
struct sluice_feature_block {
    uint32_t available, requested, active, never_changed;
};
struct sluice_feature_block sluice_gfeatures_block(const void *buf, uint32_t i);
size_t sluice_sfeatures_size(uint32_t blocks);
void sluice_sfeatures_init(void *buf, uint32_t blocks);
void sluice_sfeatures_set(void *buf, uint32_t i, uint32_t valid, uint32_t requested);

/* struct ethtool_stats + n * u64 */
size_t sluice_gstats_size(uint32_t n);
void sluice_gstats_init(void *buf, uint32_t n);
uint32_t sluice_gstats_count(const void *buf);
const uint64_t *sluice_gstats_data(const void *buf);

/* struct ethtool_rxnfc (+ rule_locs for GRXCLSRLALL) */
size_t sluice_rxnfc_size(uint32_t rule_locs);
void sluice_rxnfc_init(void *buf, uint32_t cmd, uint32_t flow_type, uint32_t rule_cnt);
uint32_t sluice_rxnfc_flow_type(const void *buf);
uint64_t sluice_rxnfc_data(const void *buf);
void sluice_rxnfc_set_data(void *buf, uint64_t data);
uint32_t sluice_rxnfc_rule_cnt(const void *buf);
/* The embedded struct ethtool_rx_flow_spec (sizeof = layout.spec_size). */
void *sluice_rxnfc_fs(void *buf);
const uint32_t *sluice_rxnfc_rule_locs(const void *buf);

/* struct ethtool_rxfh (GRSSH/SRSSH) + indir_size u32 + key_size bytes */
size_t sluice_rxfh_size(uint32_t indir_size, uint32_t key_size);
void sluice_rxfh_init(void *buf, uint32_t cmd, uint32_t indir_size, uint32_t key_size);
uint32_t sluice_rxfh_indir_size(const void *buf);
uint32_t sluice_rxfh_key_size(const void *buf);
uint8_t sluice_rxfh_hfunc(const void *buf);
uint32_t *sluice_rxfh_indir(void *buf);
uint8_t *sluice_rxfh_key(void *buf);

/* Offsets and sizes from the kernel UAPI headers, so Swift's encoder of
 * struct ethtool_rx_flow_spec can be checked byte-for-byte in tests. */
struct sluice_flow_spec_layout {
    size_t spec_size, flow_type, h_u, h_ext, m_u, m_ext, ring_cookie, location;
    size_t union_size, ext_size;
    /* within the union (relative to h_u / m_u) */
    size_t ip4_src, ip4_dst, ip4_psrc, ip4_pdst, ip4_tos;
    size_t usr4_ip_ver, usr4_proto;
    size_t ip6_src, ip6_dst, ip6_psrc, ip6_pdst, ip6_tclass;
    size_t usr6_l4_proto;
    size_t eth_dest, eth_source, eth_proto;
    /* within struct ethtool_flow_ext (relative to h_ext / m_ext) */
    size_t ext_h_dest, ext_vlan_etype, ext_vlan_tci, ext_data;
    /* struct ethtool_rxnfc */
    size_t rxnfc_size, rxnfc_cmd, rxnfc_flow_type, rxnfc_data, rxnfc_fs, rxnfc_rule_cnt, rxnfc_rule_locs;
};
struct sluice_flow_spec_layout sluice_flow_spec_layout(void);

/* The UAPI constants Swift does not import (function-like or 64-bit macros). */
uint64_t sluice_rx_cls_flow_disc(void);

/* Extended ack: `err` points at the struct nlmsgerr inside an NLMSG_ERROR
 * message (as libnl's error callback receives it). Copies the kernel's
 * NLMSGERR_ATTR_MSG text into buf (NUL-terminated) and returns its length,
 * or 0 when the message carries none. Bounded by the message's nlmsg_len. */
size_t sluice_nlmsgerr_extack(const void *err, char *buf, size_t buflen);
#endif
