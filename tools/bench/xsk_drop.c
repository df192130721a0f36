// SPDX-License-Identifier: Apache-2.0
/* The C reference receiver for tools/bench: one AF_XDP socket on one queue,
 * receive and drop, written the way libxdp's own examples (xdpsock rx_drop)
 * are: xsk_umem__create + xsk_socket__create (libxdp's default redirect
 * program), peek a batch, hand the frames straight back to the fill ring,
 * and, when the ring is empty, one of the three ways upstream `xdp-bench
 * xsk-drop` offers, so that the comparison with that peer lives here:
 *   poll       sleep in poll() (need_wakeup): the default, and Sluice's way
 *   spin       never sleep: peek again at once, kicking the kernel with
 *              recvfrom() when it asks (a whole core for one queue)
 *   busy-poll  SO_PREFER_BUSY_POLL, SO_BUSY_POLL 20 us, SO_BUSY_POLL_BUDGET
 *              BATCH: every recvfrom() runs the device's NAPI in this thread
 *              (Documentation/networking/af_xdp.rst, napi.rst), no sleeping
 * Ring, batch and frame sizes are Sluice's defaults (etc/sluice.toml), so
 * the comparison is like for like.
 *
 *   xsk_drop IFACE QUEUE SECONDS [CPU [poll|spin|busy-poll]]
 * prints "second N rx PACKETS" lines, then "total rx PACKETS". */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <xdp/xsk.h>

#define FRAME_SIZE 4096
#define FRAMES 4096
#define RX_RING 2048
#define TX_RING 2048
#define FILL_RING 4096
#define COMPLETION_RING 2048
#define BATCH 64

static volatile sig_atomic_t stopping;
static void on_signal(int signal_number) { (void)signal_number; stopping = 1; }

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Older libc headers lack these (asm-generic/socket.h, Linux 5.11). */
#ifndef SO_PREFER_BUSY_POLL
#define SO_PREFER_BUSY_POLL 69
#endif
#ifndef SO_BUSY_POLL_BUDGET
#define SO_BUSY_POLL_BUDGET 70
#endif

enum idle_mode { IDLE_POLL, IDLE_SPIN, IDLE_BUSY_POLL };

static int fail(const char *what, int error)
{
    fprintf(stderr, "xsk_drop: error: %s: %s\n", what, strerror(error));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: xsk_drop IFACE QUEUE SECONDS [CPU [poll|spin|busy-poll]]\n");
        return 2;
    }
    enum idle_mode mode = IDLE_POLL;
    if (argc == 6) {
        if (!strcmp(argv[5], "spin"))
            mode = IDLE_SPIN;
        else if (!strcmp(argv[5], "busy-poll"))
            mode = IDLE_BUSY_POLL;
        else if (strcmp(argv[5], "poll"))
            return fail("MODE (poll, spin or busy-poll)", EINVAL);
    }
    const char *interface = argv[1];
    char *end;
    unsigned long queue = strtoul(argv[2], &end, 10);
    if (*end || queue > 4095)
        return fail("QUEUE", EINVAL);
    double duration = strtod(argv[3], &end);
    if (*end || !(duration > 0 && duration < 86400))
        return fail("SECONDS", EINVAL);
    if (argc >= 5) {
        unsigned long cpu = strtoul(argv[4], &end, 10);
        if (*end || cpu >= CPU_SETSIZE)
            return fail("CPU", EINVAL);
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set))
            return fail("sched_setaffinity", errno);
    }

    size_t umem_size = (size_t)FRAMES * FRAME_SIZE;
    void *buffer = mmap(NULL, umem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED)
        return fail("mmap UMEM", errno);
    struct xsk_ring_prod fill;
    struct xsk_ring_cons completion, rx;
    struct xsk_umem *umem;
    struct xsk_umem_config umem_config = {
        .fill_size = FILL_RING, .comp_size = COMPLETION_RING, .frame_size = FRAME_SIZE,
        .frame_headroom = 0, .flags = 0,
    };
    int error = xsk_umem__create(&umem, buffer, umem_size, &fill, &completion, &umem_config);
    if (error)
        return fail("xsk_umem__create", -error);
    struct xsk_socket_config socket_config = {
        .rx_size = RX_RING, .tx_size = TX_RING,
        .xdp_flags = XDP_FLAGS_DRV_MODE,
        .bind_flags = XDP_USE_NEED_WAKEUP | XDP_COPY,
    };
    struct xsk_socket *socket;
    error = xsk_socket__create(&socket, interface, (uint32_t)queue, umem, &rx, NULL, &socket_config);
    if (error)
        return fail("xsk_socket__create", -error);
    if (mode == IDLE_BUSY_POLL) {
        int prefer = 1, usecs = 20, budget = BATCH;
        int fd = xsk_socket__fd(socket);
        if (setsockopt(fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &prefer, sizeof prefer))
            return fail("setsockopt SO_PREFER_BUSY_POLL (Linux 5.11+)", errno);
        if (setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof usecs))
            return fail("setsockopt SO_BUSY_POLL", errno);
        if (setsockopt(fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &budget, sizeof budget))
            return fail("setsockopt SO_BUSY_POLL_BUDGET (Linux 5.11+)", errno);
    }

    /* Every frame starts in the fill ring (FRAMES == FILL_RING). */
    uint32_t index;
    if (xsk_ring_prod__reserve(&fill, FRAMES, &index) != FRAMES)
        return fail("fill ring reserve", ENOSPC);
    for (uint32_t i = 0; i < FRAMES; i++)
        *xsk_ring_prod__fill_addr(&fill, index + i) = (uint64_t)i * FRAME_SIZE;
    xsk_ring_prod__submit(&fill, FRAMES);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    struct pollfd poll_set = { .fd = xsk_socket__fd(socket), .events = POLLIN };
    double start = now_seconds(), next_report = start + 1;
    uint64_t received = 0, reported = 0;
    int second = 0;
    while (!stopping) {
        double now = now_seconds();
        if (now >= next_report) {
            printf("second %d rx %llu\n", ++second, (unsigned long long)(received - reported));
            fflush(stdout);
            reported = received;
            next_report += 1;
            if (now - start >= duration)
                break;
        }
        uint32_t rx_index;
        uint32_t count = xsk_ring_cons__peek(&rx, BATCH, &rx_index);
        if (count == 0) {
            /* Busy polling: the recvfrom() is what runs NAPI, so always. */
            if (mode == IDLE_BUSY_POLL || xsk_ring_prod__needs_wakeup(&fill))
                recvfrom(xsk_socket__fd(socket), NULL, 0, MSG_DONTWAIT, NULL, NULL);
            if (mode == IDLE_POLL)
                poll(&poll_set, 1, 100);
            continue;
        }
        uint32_t fill_index;
        while (xsk_ring_prod__reserve(&fill, count, &fill_index) != count) {
            if (xsk_ring_prod__needs_wakeup(&fill))
                recvfrom(xsk_socket__fd(socket), NULL, 0, MSG_DONTWAIT, NULL, NULL);
        }
        for (uint32_t i = 0; i < count; i++)
            *xsk_ring_prod__fill_addr(&fill, fill_index + i) = xsk_ring_cons__rx_desc(&rx, rx_index + i)->addr;
        xsk_ring_prod__submit(&fill, count);
        xsk_ring_cons__release(&rx, count);
        received += count;
    }
    printf("total rx %llu\n", (unsigned long long)received);
    xsk_socket__delete(socket);
    xsk_umem__delete(umem);
    munmap(buffer, umem_size);
    return 0;
}
