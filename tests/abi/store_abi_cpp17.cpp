// SPDX-License-Identifier: Apache-2.0
//
// store_abi_cpp17.cpp: the C++17 side of the store's ABI check (see store_abi_c11.c). A C++
// program built against Mooncake's store_c.h must build unchanged against ours:
//
//  1. sizeof / alignof / offsetof of struct mooncake_replicate_config (a standard-layout,
//     trivially copyable aggregate, brace-initialisable as Mooncake's users write it);
//  2. the type of every field and type name, and the value and type of every store code;
//  3. every function: redeclared inside extern "C" as Mooncake's header declares it (C
//     linkage makes a conflicting declaration an error), and its exact function-pointer type;
//  4. at run time: NULL and not-set-up handles give INVALID_PARAMS, without a master.
//
// Build: g++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude tests/abi/store_abi_cpp17.cpp
//            -Ltarget/release -lmooncake -Wl,-z,now

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "store_c.h"
#include "mooncake.h"

#if !defined(__linux__) || !(defined(__x86_64__) || defined(__aarch64__))
#error "the layout values below are Mooncake's on LP64 Linux (x86_64, aarch64)"
#endif

using std::int64_t;
using std::is_same_v;
using std::size_t;
using std::uint64_t;

// ---- 1. layouts ------------------------------------------------------------------------------

template <typename T>
constexpr bool c_compatible = std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T> &&
                              std::is_aggregate_v<T>;

static_assert(sizeof(mooncake_replicate_config) == 32 && alignof(mooncake_replicate_config) == 8,
              "mooncake_replicate_config: size");
static_assert(c_compatible<mooncake_replicate_config>, "mooncake_replicate_config: a C struct");
static_assert(offsetof(mooncake_replicate_config, replica_num) == 0, "replica_num");
static_assert(offsetof(mooncake_replicate_config, with_soft_pin) == 8, "with_soft_pin");
static_assert(offsetof(mooncake_replicate_config, with_hard_pin) == 12, "with_hard_pin");
static_assert(offsetof(mooncake_replicate_config, preferred_segments) == 16, "preferred_segments");
static_assert(offsetof(mooncake_replicate_config, preferred_segments_count) == 24,
              "preferred_segments_count");
static_assert(sizeof(mooncake_store_range) == 24 && c_compatible<mooncake_store_range>,
              "mooncake_store_range");

// ---- 2. types and codes ----------------------------------------------------------------------

#define FIELD(type, member, ftype)                                                     \
    static_assert(is_same_v<decltype(static_cast<type *>(nullptr)->member), ftype>, \
                  #type "." #member ": type")
FIELD(mooncake_replicate_config, replica_num, size_t);
FIELD(mooncake_replicate_config, with_soft_pin, int);
FIELD(mooncake_replicate_config, with_hard_pin, int);
FIELD(mooncake_replicate_config, preferred_segments, const char **);
FIELD(mooncake_replicate_config, preferred_segments_count, size_t);
static_assert(is_same_v<mooncake_store_t, void *>, "mooncake_store_t");
static_assert(is_same_v<mooncake_replicate_config_t, struct mooncake_replicate_config>,
              "mooncake_replicate_config_t");
static_assert(is_same_v<mooncake_store_range_t, struct mooncake_store_range>, "range_t");
static_assert(is_same_v<mooncake_store_buffer_t, struct mooncake_store_buffer>, "buffer_t");

#define CODE(name, value)                                                            \
    static_assert((name) == (value), #name " is " #value);                           \
    static_assert(is_same_v<std::remove_cv_t<decltype(name)>, int>, #name " is an int")
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

// ---- 3. prototypes, as Mooncake's store_c.h declares them ----------------------------------

extern "C" {
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
}

#define SIGNATURE(fn, type) static_assert(is_same_v<decltype(&fn), type>, #fn ": signature")
using store_t = mooncake_store_t;
using config_t = const mooncake_replicate_config_t *;
SIGNATURE(mooncake_store_create, store_t (*)());
SIGNATURE(mooncake_store_destroy, void (*)(store_t));
SIGNATURE(mooncake_store_setup, int (*)(store_t, const char *, const char *, uint64_t, uint64_t,
                                        const char *, const char *, const char *));
SIGNATURE(mooncake_store_init_all, int (*)(store_t, const char *, const char *, uint64_t));
SIGNATURE(mooncake_store_health_check, int (*)(store_t));
SIGNATURE(mooncake_store_put, int (*)(store_t, const char *, const void *, size_t, config_t));
SIGNATURE(mooncake_store_put_from, int (*)(store_t, const char *, void *, size_t, config_t));
SIGNATURE(mooncake_store_batch_put_from,
          int (*)(store_t, const char **, void **, const size_t *, size_t, config_t, int *));
SIGNATURE(mooncake_store_get_into, int64_t (*)(store_t, const char *, void *, size_t));
SIGNATURE(mooncake_store_batch_get_into,
          int (*)(store_t, const char **, void **, const size_t *, size_t, int64_t *));
SIGNATURE(mooncake_store_is_exist, int (*)(store_t, const char *));
SIGNATURE(mooncake_store_batch_is_exist, int (*)(store_t, const char **, size_t, int *));
SIGNATURE(mooncake_store_get_size, int64_t (*)(store_t, const char *));
SIGNATURE(mooncake_store_get_hostname, int (*)(store_t, char *, size_t));
SIGNATURE(mooncake_store_remove, int (*)(store_t, const char *, int));
SIGNATURE(mooncake_store_remove_by_regex, int64_t (*)(store_t, const char *, int));
SIGNATURE(mooncake_store_remove_all, int64_t (*)(store_t, int));
SIGNATURE(mooncake_store_register_buffer, int (*)(store_t, void *, size_t));
SIGNATURE(mooncake_store_unregister_buffer, int (*)(store_t, void *));
// our additions
SIGNATURE(mooncake_store_put_ex,
          int (*)(store_t, const char *, const void *, size_t, config_t, int64_t, int));
SIGNATURE(mooncake_store_put_parts, int (*)(store_t, const char *, const void **, const size_t *,
                                            size_t, config_t, int64_t, int));
SIGNATURE(mooncake_store_put_batch, int (*)(store_t, const char **, const void **,
                                            const size_t *, size_t, config_t, int64_t, int, int *));
SIGNATURE(mooncake_store_put_from_ex,
          int (*)(store_t, const char *, void *, size_t, config_t, int64_t, int));
SIGNATURE(mooncake_store_batch_put_from_ex, int (*)(store_t, const char **, void **,
                                                    const size_t *, size_t, config_t, int64_t,
                                                    int, int *));
SIGNATURE(mooncake_store_get_buffer, int64_t (*)(store_t, const char *, mooncake_store_buffer_t **));
SIGNATURE(mooncake_store_batch_get_buffer,
          int (*)(store_t, const char **, size_t, mooncake_store_buffer_t **, int64_t *));
SIGNATURE(mooncake_store_buffer_data, const void *(*)(const mooncake_store_buffer_t *));
SIGNATURE(mooncake_store_buffer_size, size_t (*)(const mooncake_store_buffer_t *));
SIGNATURE(mooncake_store_buffer_free, void (*)(mooncake_store_buffer_t *));
SIGNATURE(mooncake_store_get_into_ranges, int (*)(store_t, void *, const char *,
                                                  const mooncake_store_range_t *, size_t,
                                                  int64_t *));
SIGNATURE(mooncake_store_close, int (*)(store_t));
SIGNATURE(mooncake_store_setup_dummy, int (*)(store_t, uint64_t, uint64_t, const char *));
SIGNATURE(mooncake_store_alloc_from_mem_pool, int (*)(store_t, uint64_t, uint64_t *));

// ---- 4. run time -----------------------------------------------------------------------------

static int failures = 0;

static void expect(const char *what, long long got, long long want) {
    if (got != want) {
        std::fprintf(stderr, "FAIL: %s returned %lld, expected %lld (last error: %s)\n", what,
                     got, want, mooncake_last_error());
        failures++;
    }
}

int main() {
    // Mooncake's users brace-initialise the config; a NULL list with count 0 is valid.
    const char *segments[] = {"node-a:12345"};
    mooncake_replicate_config_t config{2, 1, 0, segments, 1};
    expect("put(NULL, ...)", mooncake_store_put(nullptr, "k", "v", 1, &config),
           MOONCAKE_STORE_INVALID_PARAMS);
    if (std::strstr(mooncake_last_error(), "store is NULL") == nullptr) {
        std::fprintf(stderr, "FAIL: last error \"%s\"\n", mooncake_last_error());
        failures++;
    }
    mooncake_store_t store = mooncake_store_create();
    if (store == nullptr) {
        std::fprintf(stderr, "FAIL: mooncake_store_create() returned NULL\n");
        return 1;
    }
    expect("health_check(not set up)", mooncake_store_health_check(store), 1);
    expect("is_exist(not set up)", mooncake_store_is_exist(store, "k"),
           MOONCAKE_STORE_INVALID_PARAMS);
    char name[64];
    expect("get_hostname(not set up)", mooncake_store_get_hostname(store, name, sizeof name),
           MOONCAKE_STORE_INVALID_PARAMS);
    expect("remove_by_regex(not set up)", mooncake_store_remove_by_regex(store, ".*", 1),
           MOONCAKE_STORE_INVALID_PARAMS);
    mooncake_store_destroy(store);
    mooncake_store_destroy(nullptr);

    if (failures != 0) {
        std::fprintf(stderr, "store_abi_cpp17: %d failure(s)\n", failures);
        return 1;
    }
    std::printf("store_abi_cpp17: layouts, codes, types and prototypes match\n");
    return 0;
}
