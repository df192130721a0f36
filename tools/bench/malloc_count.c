// SPDX-License-Identifier: Apache-2.0
/* LD_PRELOAD allocation counter for tools/bench: every malloc, calloc,
 * realloc and aligned allocation of the process adds one to a counter in the
 * file named by SLUICE_MALLOC_COUNT_FILE (8 bytes, shared mapping), so the
 * benchmark reads it from outside while traffic flows, without stopping or
 * signalling the process. Swift allocates objects, arrays and strings through
 * malloc, so this counts Swift heap allocations too. Calls made before the
 * constructor ran (the dynamic loader's own) are not counted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Atomic uint64_t *counter;

__attribute__((constructor)) static void sluice_malloc_count_init(void)
{
    const char *path = getenv("SLUICE_MALLOC_COUNT_FILE");
    if (!path)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (ftruncate(fd, 4096) == 0) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (page != MAP_FAILED)
            counter = page;
    }
    close(fd);
}

static inline void count(void)
{
    if (counter)
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count(); return __libc_calloc(n, size); }
void *realloc(void *pointer, size_t size) { count(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment % sizeof(void *) || (alignment & (alignment - 1)))
        return EINVAL;
    count();
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer && size)
        return ENOMEM;
    *out = pointer;
    return 0;
}
