// SPDX-License-Identifier: Apache-2.0
/* The C side of the ring micro-benchmark: the algorithm of Sluice's SPSCRing
 * (Sources/SluiceDataPath/Ring/SPSCRing.swift) in C11 — free-running indices
 * on separate 128-byte blocks, each side caching the other's index and
 * reloading it (acquire) only when the cache says full/empty, one release
 * store per batch — moving 64-bit items between two pinned threads.
 *
 *   ring_c BATCH ITEMS [CAPACITY]   prints "c batch B items N seconds S items_per_second R" */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ring {
    _Alignas(128) _Atomic long producer_index;
    long cached_consumer_index;
    _Alignas(128) _Atomic long consumer_index;
    long cached_producer_index;
    _Alignas(128) long capacity, mask;
    uint64_t *slots;
};

static long ring_enqueue(struct ring *r, const uint64_t *items, long n)
{
    long head = atomic_load_explicit(&r->producer_index, memory_order_relaxed);
    long free_slots = r->capacity - (head - r->cached_consumer_index);
    if (free_slots < n) {
        r->cached_consumer_index = atomic_load_explicit(&r->consumer_index, memory_order_acquire);
        free_slots = r->capacity - (head - r->cached_consumer_index);
    }
    long count = free_slots < n ? free_slots : n;
    if (count <= 0)
        return 0;
    long start = head & r->mask;
    long first = count < r->capacity - start ? count : r->capacity - start;
    memcpy(r->slots + start, items, (size_t)first * sizeof *items);
    if (first < count)
        memcpy(r->slots, items + first, (size_t)(count - first) * sizeof *items);
    atomic_store_explicit(&r->producer_index, head + count, memory_order_release);
    return count;
}

static long ring_dequeue(struct ring *r, uint64_t *items, long n)
{
    long tail = atomic_load_explicit(&r->consumer_index, memory_order_relaxed);
    long available = r->cached_producer_index - tail;
    if (available < n) {
        r->cached_producer_index = atomic_load_explicit(&r->producer_index, memory_order_acquire);
        available = r->cached_producer_index - tail;
    }
    long count = available < n ? available : n;
    if (count <= 0)
        return 0;
    long start = tail & r->mask;
    long first = count < r->capacity - start ? count : r->capacity - start;
    memcpy(items, r->slots + start, (size_t)first * sizeof *items);
    if (first < count)
        memcpy(items + first, r->slots, (size_t)(count - first) * sizeof *items);
    atomic_store_explicit(&r->consumer_index, tail + count, memory_order_release);
    return count;
}

static struct ring ring;
static long batch, total;
static uint64_t checksum;

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *consumer(void *unused)
{
    (void)unused;
    pin(1);
    uint64_t items[1024], sum = 0;
    long received = 0;
    while (received < total) {
        long n = ring_dequeue(&ring, items, batch);
        for (long i = 0; i < n; i++)
            sum += items[i];
        received += n;
    }
    checksum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ring_c BATCH ITEMS [CAPACITY]\n");
        return 2;
    }
    batch = atol(argv[1]);
    total = atol(argv[2]);
    long capacity = argc > 3 ? atol(argv[3]) : 4096;
    if (batch < 1 || batch > 1024 || total < 1 || capacity < 2 || (capacity & (capacity - 1))) {
        fprintf(stderr, "ring_c: error: BATCH 1-1024, ITEMS > 0, CAPACITY a power of two\n");
        return 2;
    }
    ring.capacity = capacity;
    ring.mask = capacity - 1;
    ring.slots = calloc((size_t)capacity, sizeof *ring.slots);
    pin(0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t thread;
    pthread_create(&thread, NULL, consumer, NULL);
    uint64_t items[1024];
    long sent = 0;
    while (sent < total) {
        long n = batch < total - sent ? batch : total - sent;
        for (long i = 0; i < n; i++)
            items[i] = (uint64_t)(sent + i);
        long done = 0;
        while (done < n)
            done += ring_enqueue(&ring, items + done, n - done);
        sent += n;
    }
    pthread_join(thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t expected = (uint64_t)total * (uint64_t)(total - 1) / 2;
    if (checksum != expected) {
        fprintf(stderr, "ring_c: error: checksum %llu, expected %llu\n", (unsigned long long)checksum, (unsigned long long)expected);
        return 1;
    }
    printf("c batch %ld items %ld seconds %.3f items_per_second %.0f\n", batch, total, seconds, (double)total / seconds);
    return 0;
}
