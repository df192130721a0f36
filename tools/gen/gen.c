// SPDX-License-Identifier: Apache-2.0
/* sluice-gen: a UDP traffic generator on the XDP live-frames technique (the one
 * upstream xdp-trafficgen uses): an XDP program returning XDP_TX is run by
 * BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the generator interface, so
 * every run of the program sends the packet template as a real frame, without
 * sockets or copies. One thread, pinned to one CPU. Kernel >= 5.18.
 *
 * On veth the peer only receives XDP-transmitted frames while an XDP program is
 * attached to it; otherwise they are dropped (and counted by the peer). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/if_ether.h>
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
#include <time.h>
#include <unistd.h>

#define MIN_FRAME 42     /* Ethernet + IPv4 + UDP, no payload */
#define MAX_FRAME 1514   /* what one page of live frames holds comfortably */
#define MAX_FLOWS 65535
/* Rate-limited runs send in slices of this length, sleeping in between. */
#define SLICE_NS 1000000ull
/* Unlimited runs: frames per BPF_PROG_RUN call (the kernel bounds one call by
 * time too, and checks for signals between batches). */
#define UNLIMITED_CHUNK 100000u

struct gen_config { /* layout of `config` in xdp_tx.bpf.c */
    uint32_t flows;
    uint32_t base_port;
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
        "  --size BYTES       frame size without FCS, %d-%d [60]\n"
        "  --count N          stop after N frames [0 = no limit]\n"
        "  --rate PPS         frames per second on average; sent in bursts of what is\n"
        "                     due (one kernel run each, ~25 ms on the lab VM) [0 = max]\n"
        "  --duration SEC     stop after SEC seconds [0 = no limit; one of count/duration needed]\n"
        "  --cpu N            pin to CPU N [0; -1 = no pinning]\n"
        "  --batch N          frames per kernel batch, 1-256 [64]\n"
        "  --per-second       print frames sent every second\n"
        "  --object PATH      the compiled xdp_tx.bpf.o [next to this program]\n",
        MAX_FLOWS, MIN_FRAME, MAX_FRAME);
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
    udp->check = 0; /* none: the program rewrites the source port */
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
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
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
                return fail("--size", "frame size out of range (42-1514)");
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
        case 'o':
            o->object = optarg;
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

    struct bpf_object *object = bpf_object__open_file(o.object, NULL);
    if (!object)
        return fail(o.object, strerror(errno));
    struct bpf_map *rodata = NULL, *map;
    bpf_object__for_each_map(map, object) {
        const char *name = bpf_map__name(map);
        size_t length = strlen(name);
        if (length >= 7 && strcmp(name + length - 7, ".rodata") == 0)
            rodata = map;
    }
    struct gen_config config = { .flows = o.flows, .base_port = o.source_port };
    if (!rodata || bpf_map__set_initial_value(rodata, &config, sizeof config))
        return fail(o.object, "no .rodata of struct gen_config's size: object and generator out of step");
    if (bpf_object__load(object))
        return fail(o.object, "loading the program failed (root? kernel >= 5.18?)");
    struct bpf_program *program = bpf_object__find_program_by_name(object, "sluice_gen_tx");
    if (!program)
        return fail(o.object, "no program sluice_gen_tx");
    int program_fd = bpf_program__fd(program);

    uint8_t frame[MAX_FRAME];
    build_template(&o, frame);
    struct xdp_md context = { .data_end = o.size, .ingress_ifindex = ifindex, .rx_queue_index = 0 };

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    uint64_t slice = o.rate ? (o.rate * SLICE_NS + 999999999ull) / 1000000000ull : UNLIMITED_CHUNK;
    if (slice == 0)
        slice = 1;
    uint64_t start = now_ns();
    uint64_t end = o.duration > 0 ? start + (uint64_t)(o.duration * 1e9) : UINT64_MAX;
    /* `paced` is the pacing position, `sent` what was really sent (after a
     * stall of over a second the pacing skips ahead; `sent` never does).
     * Each BPF_PROG_RUN with live frames costs about 24 ms here whatever
     * its size (measured with strace -T), so a limited rate goes out as
     * about 40 bursts a second, each the frames due since the last one. */
    uint64_t sent = 0, paced = 0, last_report = start, sent_at_report = 0;
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
        LIBBPF_OPTS(bpf_test_run_opts, run,
            .data_in = frame, .data_size_in = o.size,
            .ctx_in = &context, .ctx_size_in = sizeof context,
            .repeat = (uint32_t)chunk, .batch_size = o.batch,
            .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
        if (bpf_prog_test_run_opts(program_fd, &run)) {
            int error = errno;
            if (error == EINTR)
                continue;
            return fail("BPF_PROG_RUN with live frames", strerror(error));
        }
        sent += chunk;
        paced += chunk;
        now = now_ns();
        if (o.per_second && now - last_report >= 1000000000ull) {
            printf("second %.0f sent %llu\n", (double)(now - start) / 1e9,
                (unsigned long long)(sent - sent_at_report));
            fflush(stdout);
            last_report = now;
            sent_at_report = sent;
        }
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("sent %llu frames in %.3f s: %.3f Mpps\n", (unsigned long long)sent, seconds,
        seconds > 0 ? (double)sent / seconds / 1e6 : 0.0);
    bpf_object__close(object);
    return 0;
}
