/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_put_get.c: a tour of the Mooncake Store C API of libmooncake (C11), against a running
 * mooncake_master.
 *
 * Usage: store_put_get MASTER_ADDR METADATA
 *   MASTER_ADDR  "host:port" of mooncake_master's RPC port
 *   METADATA     the Transfer Engine metadata string, e.g. the master's own HTTP metadata
 *                server "http://127.0.0.1:8080/metadata" (--enable_http_metadata_server)
 *
 * Two store clients in this process: "owner" contributes a 64 MiB segment, "reader" none (it
 * stores into and reads from the owner's segment). It puts values of several sizes with
 * mooncake_store_put and reads them back with mooncake_store_get_into (into registered
 * memory, as store_c.h requires), then the zero-copy
 * batch calls over a registered buffer, the queries, the lease rule (a read value cannot be
 * removed without force) and the removals; every result is checked against the documented
 * code. The exit status is 0 only if everything matched.
 *
 * Build (see ci/test-c.sh):
 *   gcc -std=c11 -O2 -Iinclude c_examples/store_put_get.c -Ltarget/release -lmooncake \
 *       -Wl,-rpath,target/release -o store_put_get
 */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_c.h"
#include "mooncake.h"

#define MIB ((uint64_t)1024 * 1024)

static int failures = 0;

/* check(what, got, want): counts and reports a mismatch, with the library's reason. */
static void check(const char *what, int64_t got, int64_t want) {
    if (got != want) {
        fprintf(stderr, "FAIL: %s: got %" PRId64 ", expected %" PRId64 " (%s)\n", what, got, want,
                mooncake_last_error());
        failures++;
    }
}

static mooncake_store_t client(const char *master, const char *metadata, uint64_t segment) {
    mooncake_store_t store = mooncake_store_create();
    if (store == NULL) {
        fprintf(stderr, "mooncake_store_create failed: %s\n", mooncake_last_error());
        exit(1);
    }
    /* "127.0.0.1" without a port: the library picks one in 12300..14300. */
    int rc = mooncake_store_setup(store, "127.0.0.1", metadata, segment, 16 * MIB, "tcp", "",
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

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MASTER_ADDR METADATA\n", argv[0]);
        return 2;
    }
    mooncake_store_t owner = client(argv[1], argv[2], 64 * MIB);
    mooncake_store_t reader = client(argv[1], argv[2], 0);
    check("health_check", mooncake_store_health_check(reader), 0);

    char name[256];
    check("get_hostname", mooncake_store_get_hostname(owner, name, sizeof name), 0);
    printf("owner segment: %s\n", name);

    /* put (copied through the staging buffer), then get_into a registered buffer */
    const size_t sizes[] = {1, 4096, 1 << 20, 8 << 20};
    unsigned char *value = malloc(8 << 20), *back = malloc(8 << 20);
    if (value == NULL || back == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    check("register_buffer(back)", mooncake_store_register_buffer(reader, back, 8 << 20), 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "value-%zu", sizes[i]);
        fill(value, sizes[i], (unsigned)i);
        check("put", mooncake_store_put(reader, key, value, sizes[i], NULL), 0);
        memset(back, 0, sizes[i]);
        check("get_into", mooncake_store_get_into(reader, key, back, sizes[i]), (int64_t)sizes[i]);
        check("bytes", memcmp(value, back, sizes[i]), 0);
        check("get_size", mooncake_store_get_size(owner, key), (int64_t)sizes[i]);
    }
    /* an existing key keeps its first value */
    check("put existing", mooncake_store_put(reader, "value-1", "X", 1, NULL), 0);
    check("get_into first", mooncake_store_get_into(reader, "value-1", back, 1), 1);
    fill(value, 1, 0);
    check("first value kept", back[0], value[0]);
    check("get_into too small", mooncake_store_get_into(reader, "value-4096", back, 100),
          MOONCAKE_STORE_INVALID_PARAMS);
    check("empty value", mooncake_store_put(reader, "empty", "", 0, NULL),
          MOONCAKE_STORE_INVALID_PARAMS);
    check("unregister_buffer(back)", mooncake_store_unregister_buffer(reader, back), 0);

    /* zero copy: one registered buffer, two keys in and out */
    size_t region_len = 2 * MIB;
    unsigned char *region = malloc(region_len);
    if (region == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    fill(region, MIB, 7);
    check("register_buffer", mooncake_store_register_buffer(reader, region, region_len), 0);
    const char *keys[] = {"zc-a", "zc-b"};
    void *bufs[] = {region, region + 4096};
    size_t lens[] = {4096, 65536};
    int put_results[2] = {1, 1};
    const char *segments[] = {name};
    mooncake_replicate_config_t config = {1, 0, 0, segments, 1}; /* prefer the owner */
    check("batch_put_from", mooncake_store_batch_put_from(reader, keys, bufs, lens, 2, &config,
                                                          put_results),
          0);
    check("batch_put_from[0]", put_results[0], 0);
    check("batch_put_from[1]", put_results[1], 0);
    void *dsts[] = {region + MIB, region + MIB + 4096};
    int64_t got[2] = {0, 0};
    check("batch_get_into", mooncake_store_batch_get_into(reader, keys, dsts, lens, 2, got), 0);
    check("batch_get_into[0]", got[0], 4096);
    check("batch_get_into[1]", got[1], 65536);
    check("zero-copy bytes", memcmp(region, region + MIB, 4096 + 65536), 0);
    check("unregister_buffer", mooncake_store_unregister_buffer(reader, region), 0);

    /* queries */
    const char *query[] = {"zc-a", "missing"};
    int exist[2] = {-1, -1};
    check("batch_is_exist", mooncake_store_batch_is_exist(owner, query, 2, exist), 0);
    check("exists", exist[0], 1);
    check("does not exist", exist[1], 0);
    check("is_exist missing", mooncake_store_is_exist(owner, "missing"), 0);
    check("get_size missing", mooncake_store_get_size(owner, "missing"),
          MOONCAKE_STORE_OBJECT_NOT_FOUND);

    /* the reads above hold leases: remove needs force */
    check("remove leased", mooncake_store_remove(owner, "zc-a", 0), MOONCAKE_STORE_OBJECT_HAS_LEASE);
    check("remove forced", mooncake_store_remove(owner, "zc-a", 1), 0);
    check("remove missing", mooncake_store_remove(owner, "zc-a", 1), MOONCAKE_STORE_OBJECT_NOT_FOUND);
    check("remove_by_regex", mooncake_store_remove_by_regex(owner, "^value-", 1), 4);
    check("remove_all", mooncake_store_remove_all(owner, 1), 1); /* zc-b */

    mooncake_store_destroy(reader);
    mooncake_store_destroy(owner);
    free(region);
    free(value);
    free(back);
    if (failures != 0) {
        fprintf(stderr, "store_put_get: %d failure(s)\n", failures);
        return 1;
    }
    printf("store_put_get: all checks passed\n");
    return 0;
}
