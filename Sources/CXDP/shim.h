#ifndef SLUICE_CXDP_SHIM_H
#define SLUICE_CXDP_SHIM_H
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <bpf/btf.h>
#include <string.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
#include <linux/if_xdp.h>
#include <linux/if_link.h>
#include "sluice_live_frames.h"

/* libbpf's option structs are built here, in C, with LIBBPF_OPTS: it sets `sz`
 * to the sizeof of the headers we compiled against and zeroes the whole struct,
 * tail padding included. Built in Swift, `sz` had to be guessed (MemoryLayout's
 * size or stride) and the padding past the last field was not guaranteed zero,
 * so libbpf 1.1 logged "bpf_xdp_query_opts has non-zero extra bytes" on every
 * start. Swift sees only plain arguments and result structs. */

/* What bpf_xdp_query() reports about an interface; attach_mode is XDP_ATTACHED_*. */
struct sluice_xdp_query_result {
    __u32 prog_id;
    __u32 drv_prog_id;
    __u32 hw_prog_id;
    __u32 skb_prog_id;
    __u8 attach_mode;
};

/* 0 or a negative errno, as bpf_xdp_query(). */
static inline int sluice_xdp_query(int ifindex, struct sluice_xdp_query_result *result)
{
    LIBBPF_OPTS(bpf_xdp_query_opts, opts);
    int error = bpf_xdp_query(ifindex, 0, &opts);
    if (error)
        return error;
    result->prog_id = opts.prog_id;
    result->drv_prog_id = opts.drv_prog_id;
    result->hw_prog_id = opts.hw_prog_id;
    result->skb_prog_id = opts.skb_prog_id;
    result->attach_mode = opts.attach_mode;
    return 0;
}

/* bpf_object__open_mem() with only object_name set; NULL with errno on failure. */
static inline struct bpf_object *sluice_bpf_object_open_mem(const void *bytes, size_t size, const char *object_name)
{
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = object_name);
    return bpf_object__open_mem(bytes, size, &opts);
}

/* bpf_link_create(BPF_XDP) with XDP_FLAGS_* in flags; a link fd or a negative errno. */
static inline int sluice_bpf_link_create_xdp(int prog_fd, int ifindex, __u32 flags)
{
    LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
    return bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
}
/* Kernel-feature probes (KernelFeatures.swift). */

/* Loads the smallest XDP program there is — "return XDP_DROP", two
 * instructions, no object file, no maps — with `prog_flags` (0, or
 * BPF_F_XDP_HAS_FRAGS to ask for multi-buffer). Attached to nothing: closing
 * the descriptor frees it. A program fd, or a negative errno. */
static inline int sluice_probe_load_xdp_drop(__u32 prog_flags)
{
    struct bpf_insn instructions[2] = {
        { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_DROP },
        { .code = BPF_JMP | BPF_EXIT },
    };
    LIBBPF_OPTS(bpf_prog_load_opts, opts, .prog_flags = prog_flags);
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "sluice_probe", "GPL", instructions, 2, &opts);
    return fd < 0 ? -errno : fd;
}

/* One BPF_PROG_RUN of `prog_fd` on a zeroed 64-byte frame, with `flags`
 * (0 or BPF_F_TEST_XDP_LIVE_FRAMES) and no context (the ingress is the
 * caller's loopback). 0 or the errno. With live frames, an XDP_DROP program
 * drops the one frame: nothing is sent or received. */
static inline int sluice_probe_test_run_xdp(int prog_fd, __u32 flags)
{
    unsigned char frame[64] = { 0 };
    if (flags & BPF_F_TEST_XDP_LIVE_FRAMES)
        return sluice_xdp_live_frames_run(prog_fd, frame, sizeof frame, NULL, 1, 0);
    LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame, .data_size_in = sizeof frame, .repeat = 1);
    return bpf_prog_test_run_opts(prog_fd, &run) ? errno : 0;
}

/* Whether the BTF has a FUNC named `name` (a kfunc, in vmlinux BTF). */
static inline bool sluice_btf_has_func(const struct btf *btf, const char *name)
{
    return btf__find_by_name_kind(btf, name, BTF_KIND_FUNC) >= 0;
}

/* Whether the BTF's enum `enum_name` has an enumerator `value_name`
 * (e.g. bpf_link_type's BPF_LINK_TYPE_XDP): 1, 0, or -ENOENT without such an enum. */
static inline int sluice_btf_enum_has_value(const struct btf *btf, const char *enum_name, const char *value_name)
{
    __s32 id = btf__find_by_name_kind(btf, enum_name, BTF_KIND_ENUM);
    if (id < 0)
        return -ENOENT;
    const struct btf_type *type = btf__type_by_id(btf, (__u32)id);
    const struct btf_enum *values = btf_enum(type);
    for (__u16 index = 0; index < btf_vlen(type); index++) {
        const char *name = btf__name_by_offset(btf, values[index].name_off);
        if (name && strcmp(name, value_name) == 0)
            return 1;
    }
    return 0;
}
#endif
