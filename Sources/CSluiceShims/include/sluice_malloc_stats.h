#ifndef SLUICE_MALLOC_STATS_H
#define SLUICE_MALLOC_STATS_H

#include <malloc.h>
#include <stddef.h>

/* glibc's allocator state, for allocation tests: Swift's Glibc module does
 * not export <malloc.h>. */
typedef struct {
    size_t in_use_bytes;   /* uordblks: bytes in use in the arenas */
    size_t mmap_blocks;    /* hblks: chunks served by mmap() */
    size_t mmap_bytes;     /* hblkhd */
} sluice_malloc_stats;

static inline sluice_malloc_stats sluice_malloc_stats_now(void) {
    struct mallinfo2 info = mallinfo2();
    sluice_malloc_stats stats = { info.uordblks, info.hblks, info.hblkhd };
    return stats;
}

/* dlvsym(3), which Swift's Glibc module leaves out (it needs _GNU_SOURCE).
 * The allocation tests need it: libc.so.6 keeps a do-nothing mtrace() as
 * the default symbol version, and the working one in libc_malloc_debug.so
 * is reachable only by asking for its version. */
void *dlvsym(void *handle, const char *symbol, const char *version);

#endif
