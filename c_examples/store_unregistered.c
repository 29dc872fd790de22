/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_unregistered.c: the zero-copy calls of store_c.h on memory that was never registered
 * (plain malloc), as Mooncake's store takes it, against a running mooncake_master.
 *
 * Usage: store_unregistered MASTER_ADDR METADATA
 *   MASTER_ADDR  "host:port" of mooncake_master's RPC port
 *   METADATA     the Transfer Engine metadata string, e.g. "http://127.0.0.1:8080/metadata"
 *
 * "owner" contributes a 64 MiB segment; "reader" none and a 1 MiB local buffer. The reader
 * stores values of 1 B .. 16 MiB from malloc'd memory with mooncake_store_put_from and
 * mooncake_store_batch_put_from and reads them back with mooncake_store_get_into and
 * mooncake_store_batch_get_into into malloc'd buffers with guard bytes on both sides; the
 * bytes must match and the guards stay intact. A third client with local_buffer_size 0 must
 * fail mooncake_store_put (-600, the key absent afterwards), as Mooncake's does, and still
 * move unregistered memory with the zero-copy calls. The exit status is 0 only if everything
 * matched.
 *
 * Build (see ci/test-c.sh):
 *   gcc -std=c11 -O2 -Iinclude c_examples/store_unregistered.c -Ltarget/release -lmooncake \
 *       -Wl,-rpath,target/release -o store_unregistered
 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_c.h"
#include "mooncake.h"

#define MIB ((size_t)1024 * 1024)
#define GUARD 4096
#define GUARD_BYTE 0xC3

static int failures = 0;

static void check(const char *what, int64_t got, int64_t want) {
    if (got != want) {
        fprintf(stderr, "FAIL: %s: got %" PRId64 ", expected %" PRId64 " (%s)\n", what, got, want,
                mooncake_last_error());
        failures++;
    }
}

static void expect(const char *what, int ok) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

static mooncake_store_t client(const char *master, const char *metadata, uint64_t segment,
                               uint64_t local_buffer) {
    mooncake_store_t store = mooncake_store_create();
    if (store == NULL) {
        fprintf(stderr, "mooncake_store_create failed: %s\n", mooncake_last_error());
        exit(1);
    }
    int rc = mooncake_store_setup(store, "127.0.0.1", metadata, segment, local_buffer, "tcp", "",
                                  master);
    if (rc != 0) {
        fprintf(stderr, "mooncake_store_setup: %d (%s)\n", rc, mooncake_last_error());
        mooncake_store_destroy(store);
        exit(1);
    }
    return store;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)((i * 2654435761u + seed) >> 7);
    }
}

/* A malloc'd destination of n bytes between two guards; returns the base (free it). */
static unsigned char *guarded(size_t n) {
    unsigned char *base = malloc(n + 2 * GUARD);
    if (base == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(base, GUARD_BYTE, n + 2 * GUARD);
    return base;
}

/* The guards (and whatever follows `used` bytes of the body of `cap`) are untouched. */
static int intact(const unsigned char *base, size_t used, size_t cap) {
    for (size_t i = 0; i < GUARD; i++) {
        if (base[i] != GUARD_BYTE) return 0;
    }
    for (size_t i = GUARD + used; i < cap + 2 * GUARD; i++) {
        if (base[i] != GUARD_BYTE) return 0;
    }
    return 1;
}

static const size_t sizes[] = {1, 4095, 65537, 1 * MIB + 3, 5 * MIB, 16 * MIB};
#define NSIZES (sizeof sizes / sizeof sizes[0])

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MASTER_ADDR METADATA\n", argv[0]);
        return 2;
    }
    mooncake_store_t owner = client(argv[1], argv[2], 64 * MIB, 16 * MIB);
    mooncake_store_t reader = client(argv[1], argv[2], 0, 1 * MIB);
    char what[128];

    /* One key at a time: put_from, get_into (into a larger buffer), all from malloc. */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *src = malloc(n);
        unsigned char *dst = guarded(n + 100);
        if (src == NULL) return 1;
        fill(src, n, (unsigned)i + 1);
        char key[64];
        snprintf(key, sizeof key, "unreg-%zu", n);
        snprintf(what, sizeof what, "put_from %zu bytes of unregistered memory", n);
        check(what, mooncake_store_put_from(reader, key, src, n, NULL), 0);
        snprintf(what, sizeof what, "get_into %zu bytes into unregistered memory", n);
        check(what, mooncake_store_get_into(reader, key, dst + GUARD, n + 100), (int64_t)n);
        snprintf(what, sizeof what, "%zu bytes came back intact", n);
        expect(what, memcmp(dst + GUARD, src, n) == 0);
        snprintf(what, sizeof what, "guards around %zu bytes", n);
        expect(what, intact(dst, n, n + 100));
        check("remove", mooncake_store_remove(reader, key, 1), 0);
        free(src);
        free(dst);
    }

    /* Every size in one batch each way. */
    const char *keys[NSIZES];
    void *srcs[NSIZES];
    void *dsts[NSIZES];
    unsigned char *bases[NSIZES];
    char names[NSIZES][64];
    int put_results[NSIZES];
    int64_t get_results[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        snprintf(names[i], sizeof names[i], "unreg-batch-%zu", sizes[i]);
        keys[i] = names[i];
        srcs[i] = malloc(sizes[i]);
        if (srcs[i] == NULL) return 1;
        fill(srcs[i], sizes[i], (unsigned)i + 50);
        bases[i] = guarded(sizes[i]);
        dsts[i] = bases[i] + GUARD;
    }
    check("batch_put_from", mooncake_store_batch_put_from(reader, keys, srcs, sizes, NSIZES, NULL, put_results), 0);
    check("batch_get_into", mooncake_store_batch_get_into(reader, keys, dsts, sizes, NSIZES, get_results), 0);
    for (size_t i = 0; i < NSIZES; i++) {
        snprintf(what, sizeof what, "batch put of %zu bytes", sizes[i]);
        check(what, put_results[i], 0);
        snprintf(what, sizeof what, "batch get of %zu bytes", sizes[i]);
        check(what, get_results[i], (int64_t)sizes[i]);
        snprintf(what, sizeof what, "batch value of %zu bytes intact, guards too", sizes[i]);
        expect(what, memcmp(dsts[i], srcs[i], sizes[i]) == 0 && intact(bases[i], sizes[i], sizes[i]));
        free(srcs[i]);
        free(bases[i]);
    }

    /* local_buffer_size 0: put fails and leaves no key (Mooncake's TestZeroLocalBufferSize);
     * the zero-copy calls still work. */
    mooncake_store_t zero = client(argv[1], argv[2], 0, 0);
    const char *value = "test_zero_buffer_value";
    check("put with local_buffer_size 0", mooncake_store_put(zero, "zero-key", value, strlen(value), NULL),
          -600);
    check("is_exist after the failed put", mooncake_store_is_exist(zero, "zero-key"), 0);
    unsigned char *z = malloc(3 * MIB);
    unsigned char *zb = guarded(3 * MIB);
    if (z == NULL) return 1;
    fill(z, 3 * MIB, 77);
    check("put_from with local_buffer_size 0", mooncake_store_put_from(zero, "zero-zc", z, 3 * MIB, NULL), 0);
    check("get_into with local_buffer_size 0", mooncake_store_get_into(zero, "zero-zc", zb + GUARD, 3 * MIB),
          (int64_t)(3 * MIB));
    expect("zero-buffer value intact, guards too", memcmp(zb + GUARD, z, 3 * MIB) == 0 && intact(zb, 3 * MIB, 3 * MIB));
    free(z);
    free(zb);

    check("remove_all", mooncake_store_remove_all(reader, 1), (int64_t)NSIZES + 1);
    mooncake_store_destroy(zero);
    mooncake_store_destroy(reader);
    mooncake_store_destroy(owner);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("store_unregistered: all checks passed\n");
    return 0;
}
