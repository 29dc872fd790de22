/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_abi_c11.c: compile-time proof that our generated store_c.h keeps Mooncake's Store C
 * ABI (store_c.h of Mooncake 3b5a594 on LP64 Linux; our side: docs/C-API.md), and that
 * the store additions of mooncake.h keep theirs:
 *
 *  1. sizeof / _Alignof / offsetof of struct mooncake_replicate_config (and of our
 *     struct mooncake_store_range);
 *  2. the type of every field and type name (_Generic);
 *  3. the value of every MOONCAKE_STORE_* code, each a macro;
 *  4. every function prototype of store_c.h, redeclared as Mooncake's header declares it (a
 *     declaration that conflicts with ours does not compile), and every store addition;
 *  5. at run time (linked against libmooncake.so): NULL and not-set-up handles give
 *     INVALID_PARAMS and a last-error text, create/health_check/destroy work without a master.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude tests/abi/store_abi_c11.c \
 *            -Ltarget/release -lmooncake -Wl,-z,now
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store_c.h"
#include "mooncake.h"

#if !defined(__linux__) || !(defined(__x86_64__) || defined(__aarch64__))
#error "the layout values below are Mooncake's on LP64 Linux (x86_64, aarch64)"
#endif

#define SAME_TYPE(expr, type) _Generic((expr), type: 1, default: 0)

/* ---- 1. layouts ----------------------------------------------------------------------------- */

#define LAYOUT(type, size, align) \
    _Static_assert(sizeof(type) == (size) && _Alignof(type) == (align), #type ": size/align")
#define OFFSET(type, member, off) \
    _Static_assert(offsetof(type, member) == (off), #type "." #member ": offset")

LAYOUT(struct mooncake_replicate_config, 32, 8);
OFFSET(struct mooncake_replicate_config, replica_num, 0);
OFFSET(struct mooncake_replicate_config, with_soft_pin, 8);
OFFSET(struct mooncake_replicate_config, with_hard_pin, 12);
OFFSET(struct mooncake_replicate_config, preferred_segments, 16);
OFFSET(struct mooncake_replicate_config, preferred_segments_count, 24);

LAYOUT(struct mooncake_store_range, 24, 8);
OFFSET(struct mooncake_store_range, dst_offset, 0);
OFFSET(struct mooncake_store_range, src_offset, 8);
OFFSET(struct mooncake_store_range, size, 16);

/* ---- 2. types ------------------------------------------------------------------------------- */

#define FIELD(type, member, ftype) \
    _Static_assert(SAME_TYPE(((type *)0)->member, ftype), #type "." #member ": type")

FIELD(struct mooncake_replicate_config, replica_num, size_t);
FIELD(struct mooncake_replicate_config, with_soft_pin, int);
FIELD(struct mooncake_replicate_config, with_hard_pin, int);
FIELD(struct mooncake_replicate_config, preferred_segments, const char **);
FIELD(struct mooncake_replicate_config, preferred_segments_count, size_t);
FIELD(struct mooncake_store_range, dst_offset, uint64_t);

#define TYPE_NAME(name, type) _Static_assert(SAME_TYPE((name *)0, type *), #name " is " #type)
TYPE_NAME(mooncake_store_t, void *);
TYPE_NAME(mooncake_replicate_config_t, struct mooncake_replicate_config);
TYPE_NAME(mooncake_store_range_t, struct mooncake_store_range);
TYPE_NAME(mooncake_store_buffer_t, struct mooncake_store_buffer);

/* ---- 3. codes ------------------------------------------------------------------------------- */

#define CODE(name, value)                                      \
    _Static_assert((name) == (value), #name " is " #value);    \
    _Static_assert(SAME_TYPE((name), int), #name " is an int")

#if !defined(MOONCAKE_STORE_OBJECT_NOT_FOUND) || !defined(MOONCAKE_STORE_INVALID_PARAMS)
#error "the store codes are macros"
#endif
CODE(MOONCAKE_STORE_INTERNAL_ERROR, -1);
CODE(MOONCAKE_STORE_BUFFER_OVERFLOW, -10);
CODE(MOONCAKE_STORE_SEGMENT_NOT_FOUND, -101);
CODE(MOONCAKE_STORE_SEGMENT_ALREADY_EXISTS, -102);
CODE(MOONCAKE_STORE_CLIENT_NOT_FOUND, -103);
CODE(MOONCAKE_STORE_NO_AVAILABLE_HANDLE, -200);
CODE(MOONCAKE_STORE_INVALID_KEY, -400);
CODE(MOONCAKE_STORE_INVALID_PARAMS, -600);
CODE(MOONCAKE_STORE_ILLEGAL_CLIENT, -601);
CODE(MOONCAKE_STORE_INVALID_WRITE, -700);
CODE(MOONCAKE_STORE_INVALID_READ, -701);
CODE(MOONCAKE_STORE_INVALID_REPLICA, -702);
CODE(MOONCAKE_STORE_REPLICA_IS_NOT_READY, -703);
CODE(MOONCAKE_STORE_OBJECT_NOT_FOUND, -704);
CODE(MOONCAKE_STORE_OBJECT_ALREADY_EXISTS, -705);
CODE(MOONCAKE_STORE_OBJECT_HAS_LEASE, -706);
CODE(MOONCAKE_STORE_LEASE_EXPIRED, -707);
CODE(MOONCAKE_STORE_TRANSFER_FAIL, -800);
CODE(MOONCAKE_STORE_RPC_FAIL, -900);
CODE(MOONCAKE_STORE_RPC_TIMEOUT, -901);
CODE(MOONCAKE_STORE_UNAVAILABLE_IN_CURRENT_MODE, -1011);
CODE(MOONCAKE_STORE_NOT_SUPPORTED, -1012);
/* parenthesised: `x-MOONCAKE_STORE_RPC_FAIL` stays an expression */
_Static_assert(1 - MOONCAKE_STORE_RPC_FAIL == 901, "codes are parenthesised");

/* ---- 4. prototypes, exactly as Mooncake's store_c.h writes them -------------------------------- */

mooncake_store_t mooncake_store_create();
void mooncake_store_destroy(mooncake_store_t store);
int mooncake_store_setup(mooncake_store_t store, const char *local_hostname,
                         const char *metadata_server, uint64_t global_segment_size,
                         uint64_t local_buffer_size, const char *protocol, const char *device_name,
                         const char *master_server_addr);
int mooncake_store_init_all(mooncake_store_t store, const char *protocol, const char *device_name,
                            uint64_t mount_segment_size);
int mooncake_store_health_check(mooncake_store_t store);
int mooncake_store_put(mooncake_store_t store, const char *key, const void *value, size_t size,
                       const mooncake_replicate_config_t *config);
int mooncake_store_put_from(mooncake_store_t store, const char *key, void *buffer, size_t size,
                            const mooncake_replicate_config_t *config);
int mooncake_store_batch_put_from(mooncake_store_t store, const char **keys, void **buffers,
                                  const size_t *sizes, size_t count,
                                  const mooncake_replicate_config_t *config, int *results_out);
int64_t mooncake_store_get_into(mooncake_store_t store, const char *key, void *buffer,
                                size_t size);
int mooncake_store_batch_get_into(mooncake_store_t store, const char **keys, void **buffers,
                                  const size_t *sizes, size_t count, int64_t *results_out);
int mooncake_store_is_exist(mooncake_store_t store, const char *key);
int mooncake_store_batch_is_exist(mooncake_store_t store, const char **keys, size_t count,
                                  int *results_out);
int64_t mooncake_store_get_size(mooncake_store_t store, const char *key);
int mooncake_store_get_hostname(mooncake_store_t store, char *buf_out, size_t buf_len);
int mooncake_store_remove(mooncake_store_t store, const char *key, int force);
int64_t mooncake_store_remove_by_regex(mooncake_store_t store, const char *pattern, int force);
int64_t mooncake_store_remove_all(mooncake_store_t store, int force);
int mooncake_store_register_buffer(mooncake_store_t store, void *buffer, size_t size);
int mooncake_store_unregister_buffer(mooncake_store_t store, void *buffer);

/* our additions (mooncake.h) */
int mooncake_store_put_ex(mooncake_store_t store, const char *key, const void *value, size_t size,
                          const mooncake_replicate_config_t *config, int64_t soft_pin_ttl_ms,
                          int upsert);
int mooncake_store_put_parts(mooncake_store_t store, const char *key, const void **parts,
                             const size_t *sizes, size_t count,
                             const mooncake_replicate_config_t *config, int64_t soft_pin_ttl_ms,
                             int upsert);
int mooncake_store_put_batch(mooncake_store_t store, const char **keys, const void **values,
                             const size_t *sizes, size_t count,
                             const mooncake_replicate_config_t *config, int64_t soft_pin_ttl_ms,
                             int upsert, int *results_out);
int mooncake_store_put_from_ex(mooncake_store_t store, const char *key, void *buffer, size_t size,
                               const mooncake_replicate_config_t *config, int64_t soft_pin_ttl_ms,
                               int upsert);
int mooncake_store_batch_put_from_ex(mooncake_store_t store, const char **keys, void **buffers,
                                     const size_t *sizes, size_t count,
                                     const mooncake_replicate_config_t *config,
                                     int64_t soft_pin_ttl_ms, int upsert, int *results_out);
int64_t mooncake_store_get_buffer(mooncake_store_t store, const char *key,
                                  mooncake_store_buffer_t **out);
int mooncake_store_batch_get_buffer(mooncake_store_t store, const char **keys, size_t count,
                                    mooncake_store_buffer_t **out, int64_t *results_out);
const void *mooncake_store_buffer_data(const mooncake_store_buffer_t *buffer);
size_t mooncake_store_buffer_size(const mooncake_store_buffer_t *buffer);
void mooncake_store_buffer_free(mooncake_store_buffer_t *buffer);
int mooncake_store_get_into_ranges(mooncake_store_t store, void *buffer, const char *key,
                                   const mooncake_store_range_t *ranges, size_t count,
                                   int64_t *results_out);
int mooncake_store_close(mooncake_store_t store);
int mooncake_store_setup_dummy(mooncake_store_t store, uint64_t mem_pool_size,
                               uint64_t local_buffer_size, const char *server_address);
int mooncake_store_alloc_from_mem_pool(mooncake_store_t store, uint64_t size, uint64_t *addr_out);

typedef void (*any_function)(void);
static const any_function ALL_FUNCTIONS[] = {
    (any_function)mooncake_store_create,          (any_function)mooncake_store_destroy,
    (any_function)mooncake_store_setup,           (any_function)mooncake_store_init_all,
    (any_function)mooncake_store_health_check,    (any_function)mooncake_store_put,
    (any_function)mooncake_store_put_from,        (any_function)mooncake_store_batch_put_from,
    (any_function)mooncake_store_get_into,        (any_function)mooncake_store_batch_get_into,
    (any_function)mooncake_store_is_exist,        (any_function)mooncake_store_batch_is_exist,
    (any_function)mooncake_store_get_size,        (any_function)mooncake_store_get_hostname,
    (any_function)mooncake_store_remove,          (any_function)mooncake_store_remove_by_regex,
    (any_function)mooncake_store_remove_all,      (any_function)mooncake_store_register_buffer,
    (any_function)mooncake_store_unregister_buffer, (any_function)mooncake_store_put_ex,
    (any_function)mooncake_store_put_parts,       (any_function)mooncake_store_put_batch,
    (any_function)mooncake_store_put_from_ex,     (any_function)mooncake_store_batch_put_from_ex,
    (any_function)mooncake_store_get_buffer,      (any_function)mooncake_store_batch_get_buffer,
    (any_function)mooncake_store_buffer_data,     (any_function)mooncake_store_buffer_size,
    (any_function)mooncake_store_buffer_free,     (any_function)mooncake_store_get_into_ranges,
    (any_function)mooncake_store_close,           (any_function)mooncake_store_setup_dummy,
    (any_function)mooncake_store_alloc_from_mem_pool,
};
#define FUNCTION_COUNT (sizeof ALL_FUNCTIONS / sizeof ALL_FUNCTIONS[0])

/* ---- 5. run time ---------------------------------------------------------------------------- */

static int failures = 0;

static void expect(const char *what, long long got, long long want) {
    if (got != want) {
        fprintf(stderr, "FAIL: %s returned %lld, expected %lld (last error: %s)\n", what, got,
                want, mooncake_last_error());
        failures++;
    }
}

int main(void) {
    for (size_t i = 0; i < FUNCTION_COUNT; i++) {
        any_function volatile f = ALL_FUNCTIONS[i];
        if (f == NULL) {
            fprintf(stderr, "FAIL: function %zu has a NULL address\n", i);
            failures++;
        }
    }

    const char *keys[1] = {"k"};
    int results[1] = {7};
    int64_t results64[1] = {7};
    mooncake_store_buffer_t *buf = NULL;
    mooncake_replicate_config_t config = {1, 0, 0, NULL, 0};

    expect("health_check(NULL)", mooncake_store_health_check(NULL), MOONCAKE_STORE_INVALID_PARAMS);
    const char *last = mooncake_last_error();
    if (last == NULL || strstr(last, "mooncake_store_health_check") == NULL) {
        fprintf(stderr, "FAIL: the last error does not name the call: \"%s\"\n", last ? last : "");
        failures++;
    }
    expect("put(NULL, ...)", mooncake_store_put(NULL, "k", "v", 1, &config),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("get_size(NULL, ...)", mooncake_store_get_size(NULL, "k"), MOONCAKE_STORE_INVALID_PARAMS);
    expect("batch_is_exist(NULL, ...)", mooncake_store_batch_is_exist(NULL, keys, 1, results),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("results untouched", results[0], 7);
    expect("remove_all(NULL, 0)", mooncake_store_remove_all(NULL, 0), MOONCAKE_STORE_INVALID_PARAMS);
    mooncake_store_destroy(NULL);

    mooncake_store_t store = mooncake_store_create();
    if (store == NULL) {
        fprintf(stderr, "FAIL: mooncake_store_create() returned NULL\n");
        return 1;
    }
    expect("health_check(not set up)", mooncake_store_health_check(store), 1);
    expect("put(not set up)", mooncake_store_put(store, "k", "v", 1, NULL),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("get_buffer(not set up)", mooncake_store_get_buffer(store, "k", &buf),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("get_buffer leaves NULL", buf == NULL, 1);
    expect("batch_get_into(not set up)",
           mooncake_store_batch_get_into(store, keys, NULL, NULL, 1, results64),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("setup(NULL hostname)",
           mooncake_store_setup(store, NULL, "P2PHANDSHAKE", 0, 0, NULL, NULL, NULL),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("close(not set up)", mooncake_store_close(store), 0);
    uint64_t addr = 1;
    expect("alloc_from_mem_pool(not set up)", mooncake_store_alloc_from_mem_pool(store, 4096, &addr),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("alloc_from_mem_pool leaves 0", (long long)addr, 0);
    expect("buffer_size(NULL)", (long long)mooncake_store_buffer_size(NULL), 0);
    mooncake_store_buffer_free(NULL);
    mooncake_store_destroy(store);
    expect("health_check(destroyed)", mooncake_store_health_check(store),
           MOONCAKE_STORE_INVALID_PARAMS);

    if (failures != 0) {
        fprintf(stderr, "store_abi_c11: %d failure(s)\n", failures);
        return 1;
    }
    printf("store_abi_c11: layouts, codes, types and %zu prototypes match\n",
           (size_t)FUNCTION_COUNT);
    return 0;
}
