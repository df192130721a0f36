// SPDX-License-Identifier: Apache-2.0
/* sluice-gen: a UDP traffic generator with two ways of sending, one thread
 * pinned to one CPU.
 *
 * live-frames: the XDP live-frames technique (the one upstream xdp-trafficgen
 * uses): an XDP program returning XDP_TX is run by BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES on the generator interface, so every run of the
 * program sends the packet template as a real frame, without sockets or
 * copies. Kernel >= 5.18. On veth the peer only receives XDP-transmitted
 * frames while an XDP program is attached to it; otherwise they are dropped
 * (and counted by the peer). The frames land on the peer's rx queue
 * (sending CPU mod its rx queues): veth_xdp_xmit picks smp_processor_id().
 *
 * af_xdp-tx: an AF_XDP socket (libxdp, TX ring only, no XDP program loaded on
 * the sender, copy mode) whose UMEM holds the frames, written once; sending is
 * queueing descriptors to them and kicking the kernel with sendto(). Slower
 * (the kernel copies every frame into an skb), but it needs no BPF_PROG_RUN.
 * On veth its frames land on the peer's rx queue with the socket's queue
 * number (dev_direct_xmit), with or without an XDP program on the peer; the
 * default --queue is the one live frames from the same CPU would land on.
 *
 * Why two: some kernels refuse BPF_PROG_RUN with live frames with EPERM even
 * to root (upstream xdp-trafficgen fails the same way there), and the
 * benchmark and its smoke test run on such machines too. --mode auto (the
 * default) probes live frames with one frame and falls back to af_xdp-tx
 * when the kernel refuses them; the method used is printed as the first
 * line ("generator: ..."). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xdp/xsk.h>

/* BPF_PROG_RUN with live frames, shared with sluiced (Sources/CXDP). */
#include "sluice_live_frames.h"

#define MIN_FRAME 42     /* Ethernet + IPv4 + UDP, no payload */
#define MAX_LIVE_FRAME 1514 /* what one page of live frames holds comfortably; the
                             * kernel runs no live frame larger than a page */
#define MAX_FRAME 9000   /* jumbo: af_xdp-tx only, as a chain of UMEM chunks */
#define MAX_FLOWS 65535
/* --stamp: at the start of the UDP payload, the 8 bytes "SLUICETS" and the
 * send time as CLOCK_MONOTONIC nanoseconds, 64-bit little-endian (what
 * Sluice's `latency` module reads; Sources/SluiceModules/LatencyModule.swift). */
#define STAMP_OFFSET (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))
#define STAMP_LENGTH 16
static const char stamp_magic[8] = { 'S', 'L', 'U', 'I', 'C', 'E', 'T', 'S' };
/* Rate-limited runs send in slices of this length, sleeping in between. */
#define SLICE_NS 1000000ull
/* Unlimited runs: frames per BPF_PROG_RUN call (the kernel bounds one call by
 * time too, and checks for signals between batches). */
#define UNLIMITED_CHUNK 100000u
/* af_xdp-tx: UMEM chunk size (the smallest the kernel accepts; a frame fits)
 * and TX and completion ring entries. */
#define XSK_FRAME_SIZE 2048u
#define XSK_RING 2048u
/* AF_XDP multi-buffer (Linux 6.6 for TX in copy mode; not in 6.1's UAPI
 * headers): the bind flag, and the descriptor option saying "the packet goes
 * on in the next descriptor". */
#ifndef XDP_USE_SG
#define XDP_USE_SG (1 << 4)
#endif
#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)
#endif

enum gen_mode { MODE_AUTO, MODE_LIVE, MODE_AFXDP };
static const char *const mode_names[] = { "auto", "live", "afxdp" };

struct gen_config { /* layout of `config` in xdp_tx.bpf.c */
    uint32_t flows;
    uint32_t base_port;
    uint32_t stamp; /* 1: write the send time at STAMP_OFFSET + 8 */
};

struct options {
    const char *interface;
    const char *object;
    uint8_t source_mac[6], destination_mac[6];
    bool have_destination_mac;
    struct in_addr source_ip, destination_ip;
    uint16_t source_port, destination_port;
    uint32_t flows;
    uint32_t size;
    uint64_t count;      /* 0: until the duration ends */
    uint64_t rate;       /* frames per second; 0: as fast as possible */
    double duration;     /* seconds; 0: until count is reached */
    int cpu;             /* -1: no pinning */
    uint32_t batch;
    bool per_second;
    bool stamp;
    enum gen_mode mode;
    const char *mode_source; /* "--mode", "SLUICE_GEN_MODE" or NULL (default) */
    uint32_t queue;          /* af_xdp-tx: the socket's queue */
    bool have_queue;
};

static volatile sig_atomic_t stopping;
static void on_signal(int signal_number) { (void)signal_number; stopping = 1; }

static void usage(FILE *out)
{
    fprintf(out,
        "usage: sluice-gen --interface IF --dst-mac MAC [options]\n"
        "  --interface IF     send out of IF (run inside IF's namespace)\n"
        "  --dst-mac MAC      destination MAC (the receiver's address)\n"
        "  --src-mac MAC      source MAC [IF's own]\n"
        "  --src-ip A         [10.77.0.2]   --dst-ip A [10.77.0.1]\n"
        "  --src-port P       first UDP source port [9000]; --dst-port P [9000]\n"
        "  --flows N          walk the source port over N values (1-%d) [1]\n"
        "  --size BYTES       frame size without FCS, %d-%d [60]; above %d only af_xdp-tx\n"
        "                     sends (multi-buffer: chains of %u-byte chunks; the MTU of\n"
        "                     both ends must let the frame through)\n"
        "  --count N          stop after N frames [0 = no limit]\n"
        "  --rate PPS         frames per second on average; sent in bursts of what is\n"
        "                     due (live: one kernel run each, ~25 ms on the lab VM) [0 = max]\n"
        "  --duration SEC     stop after SEC seconds [0 = no limit; one of count/duration needed]\n"
        "  --cpu N            pin to CPU N [0; -1 = no pinning]\n"
        "  --mode M           how to send [auto, or $SLUICE_GEN_MODE when set]:\n"
        "                       live   BPF_PROG_RUN with XDP live frames; fails where the\n"
        "                              kernel refuses them (EPERM even to root on some)\n"
        "                       afxdp  an AF_XDP socket's TX ring, copy mode (slower)\n"
        "                       auto   live, probed with one frame; afxdp when refused or\n"
        "                              when the frames are larger than live frames take\n"
        "  --queue N          afxdp: the socket's queue, which is the receiving veth's rx\n"
        "                     queue [CPU mod IF's tx queues, where live frames from that CPU\n"
        "                     land; 0 with --cpu -1]\n"
        "  --batch N          live: frames per kernel batch, 1-256 [64]\n"
        "  --per-second       print frames sent every second\n"
        "  --stamp            write \"SLUICETS\" and the send time (CLOCK_MONOTONIC ns,\n"
        "                     little-endian) at the start of each UDP payload, for\n"
        "                     sluiced's latency module; frames of at least 58 bytes\n"
        "  --object PATH      live: the compiled xdp_tx.bpf.o [next to this program]\n"
        "The first line of output names the method used (\"generator: ...\"), the last\n"
        "is \"sent N frames in T s: X Mpps\".\n",
        MAX_FLOWS, MIN_FRAME, MAX_FRAME, MAX_LIVE_FRAME, XSK_FRAME_SIZE);
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "sluice-gen: error: %s: %s\n", what, detail);
    return 1;
}

static bool parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (!text || !*text || *text == '-')
        return false;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || value > max)
        return false;
    *out = value;
    return true;
}

static bool parse_mac(const char *text, uint8_t mac[6])
{
    unsigned int b[6];
    char extra;
    if (sscanf(text, "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &extra) != 6)
        return false;
    for (int i = 0; i < 6; i++) {
        if (b[i] > 0xff)
            return false;
        mac[i] = (uint8_t)b[i];
    }
    return true;
}

static bool interface_mac(const char *interface, uint8_t mac[6])
{
    char path[128], text[32];
    snprintf(path, sizeof path, "/sys/class/net/%s/address", interface);
    FILE *file = fopen(path, "r");
    if (!file)
        return false;
    bool ok = fgets(text, sizeof text, file) && (text[strcspn(text, "\n")] = 0, parse_mac(text, mac));
    fclose(file);
    return ok;
}

static uint16_t ip_checksum(const void *header, size_t length)
{
    const uint16_t *words = header;
    uint32_t sum = 0;
    for (size_t i = 0; i < length / 2; i++)
        sum += words[i];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void build_template(const struct options *o, uint8_t *frame)
{
    memset(frame, 0, o->size);
    struct ethhdr *eth = (struct ethhdr *)frame;
    memcpy(eth->h_dest, o->destination_mac, 6);
    memcpy(eth->h_source, o->source_mac, 6);
    eth->h_proto = htons(ETH_P_IP);
    struct iphdr *ip = (struct iphdr *)(eth + 1);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)(o->size - sizeof *eth));
    ip->saddr = o->source_ip.s_addr;
    ip->daddr = o->destination_ip.s_addr;
    ip->check = ip_checksum(ip, sizeof *ip);
    struct udphdr *udp = (struct udphdr *)(ip + 1);
    udp->source = htons(o->source_port);
    udp->dest = htons(o->destination_port);
    udp->len = htons((uint16_t)(o->size - sizeof *eth - sizeof *ip));
    udp->check = 0; /* none: the port changes per frame (program or UMEM copy) */
    if (o->stamp) /* the time itself is written per frame as it goes */
        memcpy(frame + STAMP_OFFSET, stamp_magic, sizeof stamp_magic);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_until(uint64_t deadline)
{
    struct timespec t = { .tv_sec = (time_t)(deadline / 1000000000ull), .tv_nsec = (long)(deadline % 1000000000ull) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR && !stopping) {
    }
}

static bool parse_mode(const char *text, enum gen_mode *out)
{
    for (int mode = MODE_AUTO; mode <= MODE_AFXDP; mode++) {
        if (strcmp(text, mode_names[mode]) == 0) {
            *out = (enum gen_mode)mode;
            return true;
        }
    }
    return false;
}

/* IF's tx queues: the tx-N entries of /sys/class/net/IF/queues; 0 if unreadable. */
static uint32_t tx_queues(const char *interface)
{
    char path[128];
    snprintf(path, sizeof path, "/sys/class/net/%s/queues", interface);
    DIR *directory = opendir(path);
    if (!directory)
        return 0;
    uint32_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)))
        if (strncmp(entry->d_name, "tx-", 3) == 0)
            count++;
    closedir(directory);
    return count;
}

static char default_object[PATH_MAX];

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option long_options[] = {
        { "interface", required_argument, 0, 'i' }, { "dst-mac", required_argument, 0, 'm' },
        { "src-mac", required_argument, 0, 'M' }, { "src-ip", required_argument, 0, 's' },
        { "dst-ip", required_argument, 0, 'd' }, { "src-port", required_argument, 0, 'p' },
        { "dst-port", required_argument, 0, 'P' }, { "flows", required_argument, 0, 'f' },
        { "size", required_argument, 0, 'S' }, { "count", required_argument, 0, 'n' },
        { "rate", required_argument, 0, 'r' }, { "duration", required_argument, 0, 't' },
        { "cpu", required_argument, 0, 'c' }, { "batch", required_argument, 0, 'b' },
        { "per-second", no_argument, 0, 'v' }, { "object", required_argument, 0, 'o' },
        { "mode", required_argument, 0, 'x' }, { "queue", required_argument, 0, 'q' },
        { "stamp", no_argument, 0, 'T' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    *o = (struct options){ .flows = 1, .size = 60, .cpu = 0, .batch = 64, .source_port = 9000, .destination_port = 9000 };
    inet_pton(AF_INET, "10.77.0.2", &o->source_ip);
    inet_pton(AF_INET, "10.77.0.1", &o->destination_ip);
    bool have_source_mac = false;
    uint64_t value;
    int option;
    while ((option = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        switch (option) {
        case 'i':
            if (strlen(optarg) >= IF_NAMESIZE)
                return fail("--interface", "name longer than 15 characters");
            o->interface = optarg;
            break;
        case 'm':
            if (!parse_mac(optarg, o->destination_mac))
                return fail("--dst-mac", "expected six hex bytes like 02:00:00:00:00:01");
            o->have_destination_mac = true;
            break;
        case 'M':
            if (!parse_mac(optarg, o->source_mac))
                return fail("--src-mac", "expected six hex bytes like 02:00:00:00:00:02");
            have_source_mac = true;
            break;
        case 's':
        case 'd':
            if (inet_pton(AF_INET, optarg, option == 's' ? &o->source_ip : &o->destination_ip) != 1)
                return fail(option == 's' ? "--src-ip" : "--dst-ip", "expected an IPv4 address");
            break;
        case 'p':
        case 'P':
            if (!parse_u64(optarg, 65535, &value))
                return fail(option == 'p' ? "--src-port" : "--dst-port", "expected 0-65535");
            *(option == 'p' ? &o->source_port : &o->destination_port) = (uint16_t)value;
            break;
        case 'f':
            if (!parse_u64(optarg, MAX_FLOWS, &value) || value == 0)
                return fail("--flows", "expected 1-65535");
            o->flows = (uint32_t)value;
            break;
        case 'S':
            if (!parse_u64(optarg, MAX_FRAME, &value) || value < MIN_FRAME)
                return fail("--size", "frame size out of range (42-9000)");
            o->size = (uint32_t)value;
            break;
        case 'n':
            if (!parse_u64(optarg, UINT64_MAX / 2, &o->count))
                return fail("--count", "expected a non-negative number");
            break;
        case 'r':
            if (!parse_u64(optarg, 1000000000ull, &o->rate))
                return fail("--rate", "expected 0-1000000000 frames per second");
            break;
        case 't': {
            char *end = NULL;
            o->duration = strtod(optarg, &end);
            if (end == optarg || *end || !(o->duration >= 0 && o->duration <= 86400 * 365))
                return fail("--duration", "expected seconds, 0 to one year");
            break;
        }
        case 'c':
            if (strcmp(optarg, "-1") == 0) {
                o->cpu = -1;
            } else {
                if (!parse_u64(optarg, CPU_SETSIZE - 1, &value))
                    return fail("--cpu", "expected a CPU number or -1");
                o->cpu = (int)value;
            }
            break;
        case 'b':
            if (!parse_u64(optarg, 256, &value) || value == 0)
                return fail("--batch", "expected 1-256");
            o->batch = (uint32_t)value;
            break;
        case 'v':
            o->per_second = true;
            break;
        case 'T':
            o->stamp = true;
            break;
        case 'o':
            o->object = optarg;
            break;
        case 'x':
            if (!parse_mode(optarg, &o->mode))
                return fail("--mode", "expected auto, live or afxdp");
            o->mode_source = "--mode";
            break;
        case 'q':
            if (!parse_u64(optarg, 65535, &value))
                return fail("--queue", "expected a queue number");
            o->queue = (uint32_t)value;
            o->have_queue = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc)
        return fail("arguments", "unexpected positional argument (try --help)");
    if (o->stamp && o->size < STAMP_OFFSET + STAMP_LENGTH)
        return fail("--stamp", "needs --size of at least 58 (headers and the 16-byte stamp)");
    const char *environment_mode = getenv("SLUICE_GEN_MODE");
    if (!o->mode_source && environment_mode && *environment_mode) {
        if (!parse_mode(environment_mode, &o->mode))
            return fail("SLUICE_GEN_MODE", "expected auto, live or afxdp (or unset)");
        o->mode_source = "SLUICE_GEN_MODE";
    }
    if (o->mode == MODE_LIVE && o->size > MAX_LIVE_FRAME) {
        fprintf(stderr, "sluice-gen: error: --size %u: live frames carry at most %d bytes (the kernel runs no "
            "live frame larger than a page): use --mode afxdp, or auto%s\n", o->size, MAX_LIVE_FRAME,
            o->mode_source && strcmp(o->mode_source, "--mode") ? " (unset SLUICE_GEN_MODE)" : "");
        return 1;
    }
    if (!o->interface)
        return fail("--interface", "required");
    if (!o->have_destination_mac)
        return fail("--dst-mac", "required (the receiving interface's MAC)");
    if (o->count == 0 && o->duration == 0)
        return fail("--count/--duration", "give at least one, or the generator would never stop");
    if (o->flows > 1 && (uint32_t)o->source_port + o->flows - 1 > 65535)
        return fail("--flows", "source port + flows - 1 exceeds 65535");
    if (!if_nametoindex(o->interface))
        return fail(o->interface, "no such interface in this network namespace");
    if (!have_source_mac && !interface_mac(o->interface, o->source_mac))
        return fail(o->interface, "cannot read its MAC from /sys/class/net (not in this namespace?); give --src-mac");
    /* The queue live frames from the pinned CPU land on (veth_xdp_xmit picks
     * the peer's rx queue by CPU), so both methods feed the same receiver. */
    uint32_t queues = tx_queues(o->interface);
    if (!o->have_queue)
        o->queue = o->cpu >= 0 && queues ? (uint32_t)o->cpu % queues : 0;
    else if (queues && o->queue >= queues && o->mode != MODE_LIVE) {
        fprintf(stderr, "sluice-gen: error: --queue %u: %s has %u tx queues (0-%u)\n", o->queue, o->interface,
            queues, queues - 1);
        return 1;
    }
    if (!o->object) {
        /* Next to the executable, where tools/gen/build puts it. */
        ssize_t n = readlink("/proc/self/exe", default_object, sizeof default_object - 32);
        if (n <= 0)
            return fail("--object", "cannot find this program's directory; give --object");
        default_object[n] = 0;
        char *slash = strrchr(default_object, '/');
        strcpy(slash ? slash + 1 : default_object, "xdp_tx.bpf.o");
        o->object = default_object;
    }
    return 0;
}

/* live-frames: the loaded xdp_tx program and the template it is run on. */
struct live_sender {
    struct bpf_object *object;
    int program_fd;
    uint8_t frame[MAX_LIVE_FRAME];
    struct xdp_md context;
    uint32_t size, batch;
};

static int live_open(const struct options *o, unsigned int ifindex, struct live_sender *l)
{
    memset(l, 0, sizeof *l);
    l->object = bpf_object__open_file(o->object, NULL);
    if (!l->object)
        return fail(o->object, strerror(errno));
    struct bpf_map *rodata = NULL, *map;
    bpf_object__for_each_map(map, l->object) {
        const char *name = bpf_map__name(map);
        size_t length = strlen(name);
        if (length >= 7 && strcmp(name + length - 7, ".rodata") == 0)
            rodata = map;
    }
    struct gen_config config = { .flows = o->flows, .base_port = o->source_port, .stamp = o->stamp };
    if (!rodata || bpf_map__set_initial_value(rodata, &config, sizeof config))
        return fail(o->object, "no .rodata of struct gen_config's size: object and generator out of step");
    if (bpf_object__load(l->object))
        return fail(o->object, "loading the program failed (root? kernel >= 5.18? --mode afxdp needs no program)");
    struct bpf_program *program = bpf_object__find_program_by_name(l->object, "sluice_gen_tx");
    if (!program)
        return fail(o->object, "no program sluice_gen_tx");
    l->program_fd = bpf_program__fd(program);
    build_template(o, l->frame);
    l->context = (struct xdp_md){ .data_end = o->size, .ingress_ifindex = ifindex, .rx_queue_index = 0 };
    l->size = o->size;
    l->batch = o->batch;
    return 0;
}

/* Sends `count` frames in one BPF_PROG_RUN: 0, or the errno. */
static int live_send(struct live_sender *l, uint32_t count)
{
    return sluice_xdp_live_frames_run(l->program_fd, l->frame, l->size, &l->context, count, l->batch);
}

static void live_close(struct live_sender *l)
{
    bpf_object__close(l->object);
    l->object = NULL;
}

/* af_xdp-tx: a TX-only AF_XDP socket on a UMEM of pre-written frames. Frame
 * k carries source port base + k % flows, and there are a multiple of flows
 * frames, sent in order: the same port sequence as the live-frames program.
 * A frame larger than a chunk takes `chunks` consecutive chunks, sent as one
 * chain of descriptors (XDP_USE_SG; all but the last flagged XDP_PKT_CONTD).
 * At most XSK_RING descriptors are in flight (queued or awaiting completion)
 * and there are at least XSK_RING frames, so no frame is ever in flight twice. */
struct xsk_sender {
    void *area;
    size_t area_size;
    struct xsk_umem *umem;
    struct xsk_socket *socket;
    struct xsk_ring_prod fill; /* libxdp and bind() want one; TX never uses it */
    struct xsk_ring_cons completion;
    struct xsk_ring_prod tx;
    int fd;
    uint32_t frames, next, length;
    uint32_t chunks;    /* UMEM chunks (descriptors) per frame */
    bool stamp;
    uint64_t queued;    /* descriptors handed to the TX ring */
    uint64_t completed; /* ... and given back by the kernel: sent */
    int busy_error;     /* the last "try again" from sendto() but EAGAIN */
};

static int xsk_open(const struct options *o, struct xsk_sender *x)
{
    /* Zeroed first: libxdp sets up only part of the ring structs (the
     * completion ring's cached indices not at all). */
    memset(x, 0, sizeof *x);
    x->fd = -1;
    x->frames = o->flows >= XSK_RING ? o->flows : o->flows * ((XSK_RING + o->flows - 1) / o->flows);
    x->length = o->size;
    x->chunks = (o->size + XSK_FRAME_SIZE - 1) / XSK_FRAME_SIZE;
    x->stamp = o->stamp;
    x->area_size = (size_t)x->frames * x->chunks * XSK_FRAME_SIZE;
    x->area = mmap(NULL, x->area_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (x->area == MAP_FAILED) {
        x->area = NULL;
        return fail("AF_XDP UMEM (mmap)", strerror(errno));
    }
    static uint8_t template[MAX_FRAME];
    build_template(o, template);
    for (uint32_t k = 0; k < x->frames; k++) {
        /* A frame's chunks are consecutive: its bytes are too. */
        uint8_t *frame = (uint8_t *)x->area + (size_t)k * x->chunks * XSK_FRAME_SIZE;
        memcpy(frame, template, o->size);
        struct udphdr *udp = (struct udphdr *)(frame + sizeof(struct ethhdr) + sizeof(struct iphdr));
        udp->source = htons((uint16_t)(o->source_port + k % o->flows));
    }

    /* A socket that was on this queue until just now (the previous run's)
     * holds it for a moment after it is closed: the kernel releases its
     * buffer pool from a work queue, and until then bind() says EBUSY. */
    uint64_t give_up = now_ns() + 3000000000ull;
    for (;;) {
        struct xsk_umem_config umem_config;
        memset(&umem_config, 0, sizeof umem_config);
        umem_config.fill_size = XSK_RING;
        umem_config.comp_size = XSK_RING;
        umem_config.frame_size = XSK_FRAME_SIZE;
        umem_config.frame_headroom = 0;
        memset(&x->fill, 0, sizeof x->fill);
        memset(&x->completion, 0, sizeof x->completion);
        memset(&x->tx, 0, sizeof x->tx);
        int error = xsk_umem__create(&x->umem, x->area, x->area_size, &x->fill, &x->completion, &umem_config);
        if (error) {
            x->umem = NULL;
            return fail("AF_XDP UMEM (xsk_umem__create)", strerror(-error));
        }
        /* TX only, copy mode (veth has no zero-copy; on NICs whose drivers
         * do, zero-copy wake-ups need an XDP program, which this socket does
         * not load). xdp_flags only choose how libxdp would attach its
         * program, so with INHIBIT_PROG_LOAD they change nothing. */
        struct xsk_socket_config socket_config;
        memset(&socket_config, 0, sizeof socket_config);
        socket_config.rx_size = 0;
        socket_config.tx_size = XSK_RING;
        socket_config.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        socket_config.xdp_flags = XDP_FLAGS_DRV_MODE;
        socket_config.bind_flags = XDP_COPY | (x->chunks > 1 ? XDP_USE_SG : 0);
        error = xsk_socket__create(&x->socket, o->interface, o->queue, x->umem, NULL, &x->tx, &socket_config);
        if (!error)
            break;
        x->socket = NULL;
        /* A fresh UMEM for the next try: libxdp's rings of a failed socket are not reused. */
        xsk_umem__delete(x->umem);
        x->umem = NULL;
        if (error == -EBUSY && !stopping && now_ns() < give_up) {
            sleep_until(now_ns() + 20000000ull);
            continue;
        }
        fprintf(stderr, "sluice-gen: error: AF_XDP socket on %s queue %u (xsk_socket__create): %s%s\n",
            o->interface, o->queue, strerror(-error),
            error == -EBUSY ? " (another AF_XDP socket holds this queue)"
            : x->chunks > 1 && (error == -EINVAL || error == -EOPNOTSUPP)
                ? " (frames larger than 2048 bytes need AF_XDP multi-buffer TX, XDP_USE_SG: Linux 6.6 or later;"
                  " or a smaller --size)"
                : "");
        return 1;
    }
    x->fd = xsk_socket__fd(x->socket);
    return 0;
}

/* Takes back what the kernel has sent. */
static void xsk_reap(struct xsk_sender *x)
{
    uint32_t index;
    uint32_t done = xsk_ring_cons__peek(&x->completion, XSK_RING, &index);
    if (done) {
        xsk_ring_cons__release(&x->completion, done);
        x->completed += done;
    }
}

/* Copy mode transmits only inside sendto(), a bounded batch per call. 0, or
 * -1 after a fatal error. The others mean "busy, try again": more queued
 * than one call sends (EAGAIN), the device queue or completion ring full
 * (EBUSY, EAGAIN), no memory for an skb (ENOBUFS), link down (ENETDOWN). */
static int xsk_kick(struct xsk_sender *x)
{
    if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
        return 0;
    int error = errno;
    if (error == EBUSY || error == ENOBUFS || error == ENETDOWN)
        x->busy_error = error;
    if (error == EAGAIN || error == EBUSY || error == ENOBUFS || error == ENETDOWN || error == EINTR)
        return 0;
    fprintf(stderr, "sluice-gen: error: AF_XDP transmit (sendto): %s\n", strerror(error));
    return -1;
}

static bool xsk_tx_empty(struct xsk_sender *x)
{
    return xsk_prod_nb_free(&x->tx, XSK_RING) == XSK_RING;
}

/* Queues `count` frames and kicks until the kernel has taken them all, or
 * until a stop or `end`. Returns the frames queued, or -1. */
static int64_t xsk_send(struct xsk_sender *x, uint64_t count, uint64_t end)
{
    uint64_t queued = 0;
    for (;;) {
        xsk_reap(x);
        /* Room in whole frames: a chain is queued whole or not at all. */
        uint64_t room = (XSK_RING - (x->queued - x->completed)) / x->chunks;
        if (room > count - queued)
            room = count - queued;
        uint32_t index;
        uint32_t reserved = room ? xsk_ring_prod__reserve(&x->tx, (uint32_t)room * x->chunks, &index) / x->chunks : 0;
        /* One clock read per reservation: the stamp is when the frame was
         * queued, up to one sendto() batch before the kernel copies it. */
        uint64_t stamp = x->stamp ? now_ns() : 0;
        for (uint32_t i = 0; i < reserved; i++) {
            uint64_t frame = (uint64_t)x->next * x->chunks * XSK_FRAME_SIZE;
            if (x->stamp) /* x86-64 and arm64 Linux are little-endian, as the stamp is */
                memcpy((uint8_t *)x->area + frame + STAMP_OFFSET + sizeof stamp_magic, &stamp, sizeof stamp);
            for (uint32_t chunk = 0; chunk < x->chunks; chunk++) {
                struct xdp_desc *descriptor = xsk_ring_prod__tx_desc(&x->tx, index + i * x->chunks + chunk);
                uint32_t offset = chunk * XSK_FRAME_SIZE;
                descriptor->addr = frame + offset;
                descriptor->len = x->length - offset < XSK_FRAME_SIZE ? x->length - offset : XSK_FRAME_SIZE;
                descriptor->options = chunk + 1 < x->chunks ? XDP_PKT_CONTD : 0;
            }
            if (++x->next == x->frames)
                x->next = 0;
        }
        if (reserved) {
            xsk_ring_prod__submit(&x->tx, reserved * x->chunks);
            x->queued += reserved * x->chunks;
            queued += reserved;
        }
        if (queued == count && xsk_tx_empty(x))
            return (int64_t)queued;
        if (xsk_kick(x))
            return -1;
        if (stopping || now_ns() >= end)
            return (int64_t)queued;
    }
}

/* At the end: what is queued still goes out, and its completions are counted
 * (for at most a second). */
static int xsk_drain(struct xsk_sender *x)
{
    uint64_t deadline = now_ns() + 1000000000ull;
    xsk_reap(x);
    while (x->completed < x->queued && now_ns() < deadline) {
        if (!xsk_tx_empty(x) && xsk_kick(x))
            return -1;
        xsk_reap(x);
    }
    if (x->completed < x->queued)
        fprintf(stderr, "sluice-gen: warning: %llu queued frames were not sent%s%s\n",
            (unsigned long long)((x->queued - x->completed) / x->chunks), x->busy_error ? ": " : "",
            x->busy_error ? strerror(x->busy_error) : "");
    return 0;
}

static void xsk_close(struct xsk_sender *x)
{
    if (x->socket)
        xsk_socket__delete(x->socket);
    if (x->umem)
        xsk_umem__delete(x->umem);
    if (x->area)
        munmap(x->area, x->area_size);
}

/* Refusal as sluiced's kernel-feature probe counts it (sluice_live_frames.h). */
static bool live_refusal(int error)
{
    return sluice_xdp_live_frames_refused(error);
}

static const char *error_text(int error)
{
    return error == SLUICE_ENOTSUPP_KERNEL ? "Operation not supported (ENOTSUPP)" : strerror(error);
}

int main(int argc, char **argv)
{
    struct options o;
    int status = parse_options(argc, argv, &o);
    if (status)
        return status;
    unsigned int ifindex = if_nametoindex(o.interface);
    if (!ifindex)
        return fail(o.interface, "no such interface in this network namespace");
    if (o.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(o.cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set))
            return fail("--cpu", strerror(errno));
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    /* `sent` counts frames handed to the kernel (pacing and --count go by it);
     * af_xdp-tx reports the frames the kernel gave back as sent. */
    static struct live_sender live;
    static struct xsk_sender xsk;
    bool use_live = false;
    uint64_t sent = 0;
    char why[160] = "";
    if (o.mode == MODE_AFXDP) {
        snprintf(why, sizeof why, "forced by %s%s", o.mode_source,
            strcmp(o.mode_source, "--mode") == 0 ? " afxdp" : "=afxdp");
    } else if (o.size > MAX_LIVE_FRAME) { /* auto: parse_options refused live */
        snprintf(why, sizeof why, "frames of %u bytes are larger than live frames take (%d)", o.size, MAX_LIVE_FRAME);
    } else {
        if ((status = live_open(&o, ifindex, &live)))
            return status;
        /* The probe: one frame, counted as sent when it goes. */
        int error;
        while ((error = live_send(&live, 1)) == EINTR) {
        }
        if (!error) {
            use_live = true;
            sent = 1;
        } else if (o.mode == MODE_AUTO && live_refusal(error)) {
            snprintf(why, sizeof why, "live frames refused: %s", error_text(error));
            live_close(&live);
        } else {
            fprintf(stderr, "sluice-gen: error: BPF_PROG_RUN with live frames: %s%s\n", error_text(error),
                live_refusal(error) ? " (this kernel refuses live frames: --mode afxdp sends with AF_XDP instead)" : "");
            return 1;
        }
    }
    if (use_live) {
        printf("generator: live-frames (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES)\n");
    } else {
        if ((status = xsk_open(&o, &xsk))) {
            xsk_close(&xsk);
            return status;
        }
        char chains[64] = "";
        if (xsk.chunks > 1)
            snprintf(chains, sizeof chains, ", multi-buffer: %u chunks a frame", xsk.chunks);
        printf("generator: af_xdp-tx (copy mode%s, queue %u; %s)\n", chains, o.queue, why);
    }
    fflush(stdout);

    uint64_t slice = o.rate ? (o.rate * SLICE_NS + 999999999ull) / 1000000000ull : UNLIMITED_CHUNK;
    if (slice == 0)
        slice = 1;
    uint64_t start = now_ns();
    uint64_t end = o.duration > 0 ? start + (uint64_t)(o.duration * 1e9) : UINT64_MAX;
    /* `paced` is the pacing position, `sent` what was really sent (after a
     * stall of over a second the pacing skips ahead; `sent` never does).
     * Each BPF_PROG_RUN with live frames costs about 24 ms here whatever
     * its size (measured with strace -T), so a limited rate goes out as
     * about 40 bursts a second, each the frames due since the last one.
     * af_xdp-tx sends what is due at once too, but has no such fixed cost. */
    uint64_t paced = sent, last_report = start, sent_at_report = 0;
    status = 0;
    while (!stopping) {
        uint64_t now = now_ns();
        if (now >= end || (o.count && sent >= o.count))
            break;
        uint64_t chunk = slice;
        if (o.rate) {
            /* Frames due by now; never catch up by more than one second. */
            uint64_t due = (uint64_t)((double)(now - start) * (double)o.rate / 1e9) + slice;
            if (due > paced + o.rate)
                paced = due - o.rate;
            chunk = due > paced ? due - paced : 0;
            if (chunk == 0) {
                sleep_until(now + SLICE_NS / 2);
                continue;
            }
        }
        if (o.count && chunk > o.count - sent)
            chunk = o.count - sent;
        if (chunk > UINT32_MAX)
            chunk = UINT32_MAX;
        if (use_live) {
            int error = live_send(&live, (uint32_t)chunk);
            if (error == EINTR)
                continue;
            if (error) {
                fprintf(stderr, "sluice-gen: error: BPF_PROG_RUN with live frames: %s%s\n", error_text(error),
                    live_refusal(error) ? " (--mode afxdp sends with AF_XDP instead)" : "");
                return 1;
            }
        } else {
            /* Behind a rate it cannot reach, the due chunk grows to a second's
             * worth: come back for the reports and checks in between. */
            if (chunk > UNLIMITED_CHUNK)
                chunk = UNLIMITED_CHUNK;
            int64_t queued = xsk_send(&xsk, chunk, end);
            if (queued < 0) {
                status = 1;
                break;
            }
            chunk = (uint64_t)queued;
        }
        sent += chunk;
        paced += chunk;
        now = now_ns();
        if (o.per_second && now - last_report >= 1000000000ull) {
            uint64_t so_far = use_live ? sent : xsk.completed / xsk.chunks;
            printf("second %.0f sent %llu\n", (double)(now - start) / 1e9,
                (unsigned long long)(so_far - sent_at_report));
            fflush(stdout);
            last_report = now;
            sent_at_report = so_far;
        }
    }
    if (!use_live) {
        if (xsk_drain(&xsk))
            status = 1;
        sent = xsk.completed / xsk.chunks;
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("sent %llu frames in %.3f s: %.3f Mpps\n", (unsigned long long)sent, seconds,
        seconds > 0 ? (double)sent / seconds / 1e6 : 0.0);
    if (use_live)
        live_close(&live);
    else
        xsk_close(&xsk);
    return status;
}
