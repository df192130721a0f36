import SluicePluginHost
import SluiceTestSupport
import XCTest

/// The `sz` handshake both ways, checked by plugins compiled here with `cc`
/// the way an operator builds one: the host passes every struct with
/// sz = its C sizeof and every byte it does not set zero, and accepts a
/// plugin struct larger than its own only when the bytes it does not know
/// are zero (libbpf's rule for opts structs).
final class ABIHygieneTests: XCTestCase {
    private var directory: PluginDirectory!

    override func setUpWithError() throws {
        directory = try PluginDirectory()
    }

    override func tearDown() {
        directory?.remove()
    }

    func testHostPassesCSizedZeroedStructs() throws {
        try directory.compile(probePluginSource, as: "libsluice_probe.so")
        let host = directory.host()
        XCTAssertEqual(host.list().map(\.status), [.loaded], "\(host.list())")
        var facts = vethFacts()
        facts.driver = "abi_probe"
        facts.zeroCopySockets = 3

        let explanation = try host.explain(facts, channels: [1])
        XCTAssertEqual(explanation.selection.scores[0].reason, "facts ok")
        XCTAssertEqual(explanation.mappings[0].message, "facts ok, map ok")
        XCTAssertEqual(explanation.mappings[0].bindQueue, 1)
        XCTAssertEqual(explanation.preparation.message, "facts ok, requirements ok")
        let verdict = try host.checkChannelsChange(facts, proposed: ChannelCounts(rx: 2, tx: 2))
        XCTAssertEqual(verdict, ChannelChangeVerdict(allowed: true, message: "facts ok, counts ok"))
    }

    func testLargerPluginStructNeedsZeroExtraBytes() throws {
        try directory.compile(probePluginSource, as: "libsluice_newer_zero.so", defines: ["BIGGER", "PROBE_NAME=\"newer_zero\""])
        try directory.compile(
            probePluginSource, as: "libsluice_newer_set.so", defines: ["BIGGER", "EXTRA_BYTE=1", "PROBE_NAME=\"newer_set\""])
        // A garbage size must not make the host read far past the struct.
        try directory.compile(
            testPluginSource, as: "libsluice_huge.so", defines: ["PLUGIN_NAME=\"huge\"", "PLUGIN_SZ=1000000"])
        let host = directory.host()
        let records = Dictionary(uniqueKeysWithValues: host.list().map { (URL(fileURLWithPath: $0.path).lastPathComponent, $0) })

        XCTAssertEqual(records["libsluice_newer_zero.so"]?.status, .loaded, "\(records)")
        XCTAssertEqual(records["libsluice_newer_zero.so"]?.plugin?.name, "newer_zero")

        XCTAssertEqual(records["libsluice_newer_set.so"]?.status, .rejected)
        XCTAssertEqual(
            records["libsluice_newer_set.so"]?.reason,
            "struct size 80 is larger than this host's 72 and byte 72 is not zero: the plugin sets fields of a newer plugin ABI that this Sluice would ignore; upgrade Sluice or rebuild the plugin against this host's sluice/driver_plugin.h")

        XCTAssertEqual(records["libsluice_huge.so"]?.status, .rejected)
        XCTAssertEqual(
            records["libsluice_huge.so"]?.reason,
            "struct size 1000000 is implausible (more than 4096 bytes); set sz = sizeof(struct sluice_driver_plugin)")

        // The accepted one works, hooks and all.
        var facts = vethFacts()
        facts.driver = "abi_probe"
        XCTAssertEqual(try host.explain(facts, channels: [0], forced: "newer_zero").mappings[0].message, "facts ok, map ok")
    }
}

/// A plugin that checks what the host hands it: each hook reports, for each
/// struct, "ok" when sz is the C sizeof and every byte the host had no value
/// for (padding, string tails) is zero, and the details otherwise. -DBIGGER
/// makes its own struct 8 bytes larger than the header's, EXTRA_BYTE the
/// first of those bytes.
private let probePluginSource = #"""
#include <stdio.h>
#include <string.h>
#include "sluice/driver_plugin.h"

#ifndef PROBE_NAME
#define PROBE_NAME "abi_probe"
#endif
#ifndef EXTRA_BYTE
#define EXTRA_BYTE 0
#endif

#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

static int zero_between(const void *p, size_t from, size_t to)
{
    const unsigned char *bytes = p;
    for (size_t i = from; i < to; i++)
        if (bytes[i])
            return 0;
    return 1;
}

/* Zero after the string's NUL, to the end of its field. */
static int string_tail_zero(const char *field, size_t size)
{
    size_t len = strnlen(field, size);
    return zero_between(field, len, size);
}

static void report(char *out, size_t out_len, const char *what, size_t sz, size_t size, int zero)
{
    if (sz == size && zero)
        snprintf(out, out_len, "%s ok", what);
    else
        snprintf(out, out_len, "%s sz %zu, sizeof %zu, %s", what, sz, size,
                 zero ? "unset bytes zero" : "unset bytes NOT zero");
}

static void report_facts(const struct sluice_driver_facts *f, char *out, size_t out_len)
{
    typedef struct sluice_driver_facts F;
    int zero = zero_between(f, END_OF(F, kernel_release), offsetof(F, rx_channels)) &&
               zero_between(f, END_OF(F, zerocopy_sockets), sizeof(F)) &&
               string_tail_zero(f->ifname, sizeof(f->ifname)) &&
               string_tail_zero(f->driver, sizeof(f->driver)) &&
               string_tail_zero(f->driver_version, sizeof(f->driver_version)) &&
               string_tail_zero(f->firmware_version, sizeof(f->firmware_version)) &&
               string_tail_zero(f->kernel_release, sizeof(f->kernel_release));
    report(out, out_len, "facts", f->sz, sizeof(F), zero);
}

static int probe__match(const struct sluice_driver_facts *facts, char *msg, size_t msg_len)
{
    if (strcmp(facts->driver, "abi_probe") != 0)
        return 0;
    report_facts(facts, msg, msg_len);
    return 50;
}

static int probe__map_channel(const struct sluice_driver_facts *facts, uint32_t channel,
                              struct sluice_queue_map *map, char *msg, size_t msg_len)
{
    char a[160], b[160];
    (void)channel;
    report_facts(facts, a, sizeof(a));
    report(b, sizeof(b), "map", map->sz, sizeof(*map),
           zero_between(map, END_OF(struct sluice_queue_map, xskmap_key), sizeof(*map)));
    snprintf(msg, msg_len, "%s, %s", a, b);
    return 0;
}

static int probe__prepare(const struct sluice_driver_facts *facts, struct sluice_requirements *req,
                          char *msg, size_t msg_len)
{
    char a[160], b[160];
    report_facts(facts, a, sizeof(a));
    /* The host zeroes the whole struct: no flag, no number may be set. */
    report(b, sizeof(b), "requirements", req->sz, sizeof(*req),
           zero_between(req, sizeof(req->sz), sizeof(*req)));
    snprintf(msg, msg_len, "%s, %s", a, b);
    return 0;
}

static int probe__check_channels_change(const struct sluice_driver_facts *facts,
                                        const struct sluice_channel_counts *proposed,
                                        char *msg, size_t msg_len)
{
    char a[160], b[160];
    report_facts(facts, a, sizeof(a));
    report(b, sizeof(b), "counts", proposed->sz, sizeof(*proposed),
           zero_between(proposed, END_OF(struct sluice_channel_counts, combined), sizeof(*proposed)));
    snprintf(msg, msg_len, "%s, %s", a, b);
    return 0;
}

#define PROBE_PLUGIN_FIELDS                                  \
    .abi_version = SLUICE_DRIVER_ABI_VERSION,                \
    .name = PROBE_NAME,                                      \
    .version = "0.1",                                        \
    .description = "checks the structs the host passes",    \
    .match = probe__match,                                   \
    .map_channel = probe__map_channel,                       \
    .prepare = probe__prepare,                               \
    .check_channels_change = probe__check_channels_change

#ifdef BIGGER
/* A plugin built against a later header with one more (8-byte) field. */
struct newer_plugin {
    struct sluice_driver_plugin v1;
    unsigned char later[8];
};
static const struct newer_plugin probe_plugin = {
    .v1 = { .sz = sizeof(struct newer_plugin), PROBE_PLUGIN_FIELDS },
    .later = { EXTRA_BYTE },
};
#define PROBE_PLUGIN (&probe_plugin.v1)
#else
static const struct sluice_driver_plugin probe_plugin = {
    .sz = sizeof(struct sluice_driver_plugin), PROBE_PLUGIN_FIELDS
};
#define PROBE_PLUGIN (&probe_plugin)
#endif

const struct sluice_driver_plugin *sluice_driver_plugin_v1(void)
{
    return PROBE_PLUGIN;
}
"""#
