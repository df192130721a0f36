#include "sluice_ethtool.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/netlink.h>

int sluice_ethtool_ioctl(int fd, const char *ifname, void *data) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (strlen(ifname) >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = data;
    return ioctl(fd, SIOCETHTOOL, &ifr);
}

int sluice_ethtool_driver_info(int fd, const char *ifname, struct sluice_driver_info *info) {
    struct ethtool_drvinfo raw = { .cmd = ETHTOOL_GDRVINFO };
    if (sluice_ethtool_ioctl(fd, ifname, &raw) < 0) return -1;
    /* The fields are the kernel's 32 bytes; Swift reads each up to a NUL or its end. */
    memcpy(info->driver, raw.driver, sizeof(info->driver));
    memcpy(info->version, raw.version, sizeof(info->version));
    memcpy(info->firmware_version, raw.fw_version, sizeof(info->firmware_version));
    memcpy(info->bus_info, raw.bus_info, sizeof(info->bus_info));
    info->statistics_count = raw.n_stats;
    info->private_flags_count = raw.n_priv_flags;
    return 0;
}

int sluice_ethtool_sset_count(int fd, const char *ifname, uint32_t set, uint32_t *count) {
    /* Room for the one count the kernel writes after the header (data[]). */
    union {
        struct ethtool_sset_info hdr;
        uint8_t bytes[sizeof(struct ethtool_sset_info) + sizeof(uint32_t)];
    } info;
    memset(&info, 0, sizeof(info));
    info.hdr.cmd = ETHTOOL_GSSET_INFO;
    info.hdr.sset_mask = 1ULL << set;
    int rc = sluice_ethtool_ioctl(fd, ifname, &info);
    if (rc < 0) return rc;
    /* The kernel clears the bit of a set the driver does not have. */
    if (!(info.hdr.sset_mask & (1ULL << set))) {
        errno = EOPNOTSUPP;
        return -1;
    }
    *count = info.hdr.data[0];
    return 0;
}

size_t sluice_gstrings_size(uint32_t count) {
    return sizeof(struct ethtool_gstrings) + (size_t)count * ETH_GSTRING_LEN;
}
void sluice_gstrings_init(void *buf, uint32_t set, uint32_t count) {
    struct ethtool_gstrings *s = buf;
    s->cmd = ETHTOOL_GSTRINGS;
    s->string_set = set;
    s->len = count;
}
uint32_t sluice_gstrings_count(const void *buf) { return ((const struct ethtool_gstrings *)buf)->len; }
const char *sluice_gstrings_at(const void *buf, uint32_t i) {
    return (const char *)((const struct ethtool_gstrings *)buf)->data + (size_t)i * ETH_GSTRING_LEN;
}
size_t sluice_gstring_len(void) { return ETH_GSTRING_LEN; }

size_t sluice_gfeatures_size(uint32_t blocks) {
    return sizeof(struct ethtool_gfeatures) + (size_t)blocks * sizeof(struct ethtool_get_features_block);
}
void sluice_gfeatures_init(void *buf, uint32_t blocks) {
    struct ethtool_gfeatures *g = buf;
    g->cmd = ETHTOOL_GFEATURES;
    g->size = blocks;
}
struct sluice_feature_block sluice_gfeatures_block(const void *buf, uint32_t i) {
    const struct ethtool_get_features_block *b = &((const struct ethtool_gfeatures *)buf)->features[i];
    struct sluice_feature_block out = { b->available, b->requested, b->active, b->never_changed };
    return out;
}
size_t sluice_sfeatures_size(uint32_t blocks) {
    return sizeof(struct ethtool_sfeatures) + (size_t)blocks * sizeof(struct ethtool_set_features_block);
}
void sluice_sfeatures_init(void *buf, uint32_t blocks) {
    struct ethtool_sfeatures *s = buf;
    s->cmd = ETHTOOL_SFEATURES;
    s->size = blocks;
}
void sluice_sfeatures_set(void *buf, uint32_t i, uint32_t valid, uint32_t requested) {
    struct ethtool_sfeatures *s = buf;
    s->features[i].valid = valid;
    s->features[i].requested = requested;
}

size_t sluice_gstats_size(uint32_t n) { return sizeof(struct ethtool_stats) + (size_t)n * sizeof(uint64_t); }
void sluice_gstats_init(void *buf, uint32_t n) {
    struct ethtool_stats *s = buf;
    s->cmd = ETHTOOL_GSTATS;
    s->n_stats = n;
}
uint32_t sluice_gstats_count(const void *buf) { return ((const struct ethtool_stats *)buf)->n_stats; }
const uint64_t *sluice_gstats_data(const void *buf) { return (const uint64_t *)((const struct ethtool_stats *)buf)->data; }

size_t sluice_rxnfc_size(uint32_t rule_locs) {
    return sizeof(struct ethtool_rxnfc) + (size_t)rule_locs * sizeof(uint32_t);
}
void sluice_rxnfc_init(void *buf, uint32_t cmd, uint32_t flow_type, uint32_t rule_cnt) {
    struct ethtool_rxnfc *n = buf;
    n->cmd = cmd;
    n->flow_type = flow_type;
    n->rule_cnt = rule_cnt;
}
uint32_t sluice_rxnfc_flow_type(const void *buf) { return ((const struct ethtool_rxnfc *)buf)->flow_type; }
uint64_t sluice_rxnfc_data(const void *buf) { return ((const struct ethtool_rxnfc *)buf)->data; }
void sluice_rxnfc_set_data(void *buf, uint64_t data) { ((struct ethtool_rxnfc *)buf)->data = data; }
uint32_t sluice_rxnfc_rule_cnt(const void *buf) { return ((const struct ethtool_rxnfc *)buf)->rule_cnt; }
void *sluice_rxnfc_fs(void *buf) { return &((struct ethtool_rxnfc *)buf)->fs; }
const uint32_t *sluice_rxnfc_rule_locs(const void *buf) { return ((const struct ethtool_rxnfc *)buf)->rule_locs; }

size_t sluice_rxfh_size(uint32_t indir_size, uint32_t key_size) {
    return sizeof(struct ethtool_rxfh) + (size_t)indir_size * sizeof(uint32_t) + key_size;
}
void sluice_rxfh_init(void *buf, uint32_t cmd, uint32_t indir_size, uint32_t key_size) {
    struct ethtool_rxfh *r = buf;
    r->cmd = cmd;
    r->indir_size = indir_size;
    r->key_size = key_size;
}
uint32_t sluice_rxfh_indir_size(const void *buf) { return ((const struct ethtool_rxfh *)buf)->indir_size; }
uint32_t sluice_rxfh_key_size(const void *buf) { return ((const struct ethtool_rxfh *)buf)->key_size; }
uint8_t sluice_rxfh_hfunc(const void *buf) { return ((const struct ethtool_rxfh *)buf)->hfunc; }
uint32_t *sluice_rxfh_indir(void *buf) { return ((struct ethtool_rxfh *)buf)->rss_config; }
uint8_t *sluice_rxfh_key(void *buf) {
    struct ethtool_rxfh *r = buf;
    return (uint8_t *)(r->rss_config + r->indir_size);
}

#define FS(f) offsetof(struct ethtool_rx_flow_spec, f)
#define FU(f) offsetof(union ethtool_flow_union, f)
#define FE(f) offsetof(struct ethtool_flow_ext, f)
#define NF(f) offsetof(struct ethtool_rxnfc, f)
struct sluice_flow_spec_layout sluice_flow_spec_layout(void) {
    struct sluice_flow_spec_layout l = {
        .spec_size = sizeof(struct ethtool_rx_flow_spec),
        .flow_type = FS(flow_type), .h_u = FS(h_u), .h_ext = FS(h_ext), .m_u = FS(m_u),
        .m_ext = FS(m_ext), .ring_cookie = FS(ring_cookie), .location = FS(location),
        .union_size = sizeof(union ethtool_flow_union), .ext_size = sizeof(struct ethtool_flow_ext),
        .ip4_src = FU(tcp_ip4_spec.ip4src), .ip4_dst = FU(tcp_ip4_spec.ip4dst),
        .ip4_psrc = FU(tcp_ip4_spec.psrc), .ip4_pdst = FU(tcp_ip4_spec.pdst), .ip4_tos = FU(tcp_ip4_spec.tos),
        .usr4_ip_ver = FU(usr_ip4_spec.ip_ver), .usr4_proto = FU(usr_ip4_spec.proto),
        .ip6_src = FU(tcp_ip6_spec.ip6src), .ip6_dst = FU(tcp_ip6_spec.ip6dst),
        .ip6_psrc = FU(tcp_ip6_spec.psrc), .ip6_pdst = FU(tcp_ip6_spec.pdst), .ip6_tclass = FU(tcp_ip6_spec.tclass),
        .usr6_l4_proto = FU(usr_ip6_spec.l4_proto),
        .eth_dest = FU(ether_spec.h_dest), .eth_source = FU(ether_spec.h_source), .eth_proto = FU(ether_spec.h_proto),
        .ext_h_dest = FE(h_dest), .ext_vlan_etype = FE(vlan_etype), .ext_vlan_tci = FE(vlan_tci), .ext_data = FE(data),
        .rxnfc_size = sizeof(struct ethtool_rxnfc), .rxnfc_cmd = NF(cmd), .rxnfc_flow_type = NF(flow_type),
        .rxnfc_data = NF(data), .rxnfc_fs = NF(fs), .rxnfc_rule_cnt = NF(rule_cnt), .rxnfc_rule_locs = NF(rule_locs),
    };
    return l;
}

uint64_t sluice_rx_cls_flow_disc(void) { return RX_CLS_FLOW_DISC; }

#ifndef NLM_F_CAPPED
#define NLM_F_CAPPED 0x100
#endif
#ifndef NLM_F_ACK_TLVS
#define NLM_F_ACK_TLVS 0x200
#endif
size_t sluice_nlmsgerr_extack(const void *errp, char *buf, size_t buflen) {
    if (buflen == 0) return 0;
    buf[0] = 0;
    const struct nlmsgerr *err = errp;
    const struct nlmsghdr *hdr = (const struct nlmsghdr *)((const char *)errp - NLMSG_HDRLEN);
    if (!(hdr->nlmsg_flags & NLM_F_ACK_TLVS)) return 0;
    /* TLVs follow the nlmsgerr; without NETLINK_CAP_ACK the kernel echoes the
     * whole request in between. */
    size_t offset = NLMSG_HDRLEN + sizeof(*err);
    if (!(hdr->nlmsg_flags & NLM_F_CAPPED)) {
        if (err->msg.nlmsg_len < NLMSG_HDRLEN) return 0;
        offset += NLMSG_ALIGN(err->msg.nlmsg_len) - NLMSG_HDRLEN;
    }
    size_t end = hdr->nlmsg_len;
    while (offset + NLA_HDRLEN <= end) {
        const struct nlattr *a = (const struct nlattr *)((const char *)hdr + offset);
        if (a->nla_len < NLA_HDRLEN || offset + a->nla_len > end) break;
        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            const char *text = (const char *)a + NLA_HDRLEN;
            size_t n = a->nla_len - NLA_HDRLEN;
            n = strnlen(text, n);
            if (n >= buflen) n = buflen - 1;
            memcpy(buf, text, n);
            buf[n] = 0;
            return n;
        }
        offset += NLA_ALIGN(a->nla_len);
    }
    return 0;
}
