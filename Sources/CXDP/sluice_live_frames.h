#ifndef SLUICE_LIVE_FRAMES_H
#define SLUICE_LIVE_FRAMES_H
/* XDP live frames (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18):
 * one definition of "run" and of "refused" for the two programs that ask —
 * tools/gen/gen.c (which sends with it) and sluiced's kernel-feature probe
 * (KernelFeatures.swift), so that the daemon's report and the generator's
 * fallback cannot disagree about what counts as refusal. Header only:
 * gen.c is built on its own, with plain cc. */
#include <errno.h>
#include <stdbool.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* The kernel's "not supported" errno, which has no name in userspace. */
#define SLUICE_ENOTSUPP_KERNEL 524

/* Runs the XDP program `prog_fd` `repeat` times on `frame` (`size` bytes)
 * with live frames: every run's verdict is carried out (XDP_TX transmits,
 * XDP_DROP drops). `context` may be NULL (then the loopback device of the
 * caller's network namespace is the ingress); `batch` 0 is the kernel's
 * default. Returns 0 or the errno. */
static inline int sluice_xdp_live_frames_run(int prog_fd, void *frame, __u32 size, struct xdp_md *context,
                                             __u32 repeat, __u32 batch)
{
    LIBBPF_OPTS(bpf_test_run_opts, run,
        .data_in = frame, .data_size_in = size,
        .ctx_in = context, .ctx_size_in = context ? sizeof *context : 0,
        .repeat = repeat, .batch_size = batch,
        .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
    return bpf_prog_test_run_opts(prog_fd, &run) ? errno : 0;
}

/* Whether `error` from sluice_xdp_live_frames_run means "this kernel will
 * not run live frames": before 5.18 the flag is unknown (EINVAL), and some
 * kernels forbid it even to root with every capability (EPERM). */
static inline bool sluice_xdp_live_frames_refused(int error)
{
    return error == EPERM || error == EOPNOTSUPP || error == SLUICE_ENOTSUPP_KERNEL || error == EINVAL;
}
#endif
