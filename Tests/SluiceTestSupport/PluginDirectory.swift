import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A temporary plugin directory holding real plugin files: the plugins this
/// package builds, copied from the products directory, and plugins compiled
/// from C source with `cc` the way an operator would build one.
public final class PluginDirectory {
    public let path: String
    private let buildPath: String

    public init() throws {
        path = try Self.makeTemporaryDirectory("sluice-plugins")
        buildPath = try Self.makeTemporaryDirectory("sluice-plugin-build")
    }

    public func remove() {
        for dir in [path, buildPath] {
            // A test may have made the directory world-writable or read-only.
            chmod(dir, 0o700)
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// A directory the daemon accepts (mode 0755) holding the plugins this
    /// package ships, generic and mlx5: what a daemon test's `[plugins] dir`
    /// points at. Removed again if the copy fails.
    public static func withShippedPlugins() throws -> PluginDirectory {
        let directory = try PluginDirectory()
        do {
            try directory.installBuilt("libsluice_generic.so", "libsluice_mlx5.so")
        } catch {
            directory.remove()
            throw error
        }
        chmod(directory.path, 0o755)
        return directory
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Copies built plugins (e.g. "libsluice_generic.so") into the directory.
    public func installBuilt(_ names: String...) throws {
        for name in names {
            let source = productsDirectory.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: source) else {
                throw XCTSkip("\(source) is missing: run `swift build --build-tests` first")
            }
            try FileManager.default.copyItem(atPath: source, toPath: file(name))
            chmod(file(name), 0o644)
        }
    }

    /// Compiles `source` with `cc -shared -fPIC -I<ABI include dir>` and the
    /// given `-D` definitions into `fileName` in the plugin directory.
    public func compile(_ source: String, as fileName: String, defines: [String] = []) throws {
        let sourcePath = "\(buildPath)/\(fileName).c"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let include = repositoryRoot.appendingPathComponent("Sources/CSluiceDriverABI/include").path
        let objectPath = "\(buildPath)/\(fileName)"
        try runCommand(
            ["cc", "-shared", "-fPIC", "-Wall", "-Werror", "-I\(include)"] + defines.map { "-D\($0)" }
                + ["-o", objectPath, sourcePath],
            check: true)
        chmod(objectPath, 0o644)
        // Like install(1): a new file takes the name, the old one is not rewritten.
        guard rename(objectPath, file(fileName)) == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }

    private static func makeTemporaryDirectory(_ prefix: String) throws -> String {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        return String(cString: made)
    }
}

/// A configurable test plugin: scores 50 for driver "veth" and maps channel i
/// to queue i + QUEUE_OFFSET. The -D switches produce the broken variants.
public let testPluginSource = #"""
#include <stdio.h>
#include <string.h>
#include "sluice/driver_plugin.h"

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "veth_test"
#endif
#ifndef PLUGIN_ABI
#define PLUGIN_ABI SLUICE_DRIVER_ABI_VERSION
#endif
#ifndef PLUGIN_SZ
#define PLUGIN_SZ sizeof(struct sluice_driver_plugin)
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "0.1"
#endif
#ifndef QUEUE_OFFSET
#define QUEUE_OFFSET 2
#endif

static int test__match(const struct sluice_driver_facts *facts, char *msg, size_t msg_len)
{
    if (strcmp(facts->driver, "veth") != 0)
        return 0;
    snprintf(msg, msg_len, "test plugin for veth on %s", facts->ifname);
    return 50;
}

static int test__map_channel(const struct sluice_driver_facts *facts, uint32_t channel,
                             struct sluice_queue_map *map, char *msg, size_t msg_len)
{
#ifdef FACTS_LOG
    /* Every question the host asks, so that a test can check the facts. */
    FILE *log = fopen(FACTS_LOG, "a");
    if (log) {
        fprintf(log, "map channel=%u zerocopy_requested=%u xdp_attached=%u xdp_mode=%u zerocopy_sockets=%u rx_channels=%u\n",
                channel, (unsigned)facts->zerocopy_requested, (unsigned)facts->xdp_attached,
                (unsigned)facts->xdp_mode, (unsigned)facts->zerocopy_sockets, sluice_facts__rx_channels(facts));
        fclose(log);
    }
#endif
#ifdef SPLIT_BY_MODE
    /* Like mlx5 before Linux 6.1: zero-copy reads channel + offset, copy
     * mode and skb-mode XDP the channel's own queue. */
    uint32_t queue = facts->zerocopy_requested && facts->xdp_mode != SLUICE_XDP_MODE_SKB ? channel + QUEUE_OFFSET : channel;
#else
    (void)facts;
    uint32_t queue = channel + QUEUE_OFFSET;
#endif
    map->bind_queue = map->steer_queue = map->xskmap_key = queue;
    snprintf(msg, msg_len, "channel %u is served by queue %u", channel, queue);
    return 0;
}

static const struct sluice_driver_plugin test_plugin = {
    .sz = PLUGIN_SZ,
    .abi_version = PLUGIN_ABI,
    .name = PLUGIN_NAME,
    .version = PLUGIN_VERSION,
    .description = "test plugin compiled by the test suite",
    .match = test__match,
    .map_channel = test__map_channel,
};

#ifndef NO_ENTRY
const struct sluice_driver_plugin *sluice_driver_plugin_v1(void)
{
#ifdef RETURN_NULL
    (void)test_plugin;
    return NULL;
#else
    return &test_plugin;
#endif
}
#else
const struct sluice_driver_plugin *some_other_symbol(void) { return &test_plugin; }
#endif
"""#
