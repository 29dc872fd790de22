/* SPDX-License-Identifier: Apache-2.0 */
/*
 * abi_c11.c: compile-time proof that our generated headers keep Mooncake's C ABI
 * (transfer_engine_c.h of Mooncake 3b5a594 on x86_64 Linux; our side: docs/C-API.md).
 *
 *  1. sizeof / _Alignof / offsetof of every struct, union members included;
 *  2. the value of every constant, and that each of Mooncake's constants is a macro (programs
 *     test them with #ifdef / #if);
 *  3. the type behind every type name (_Generic);
 *  4. every function prototype, redeclared as Mooncake's header declares it: a declaration
 *     that conflicts with ours does not compile;
 *  5. at run time (linked against libmooncake.so, so every symbol must resolve): the version,
 *     the last-error string, and the two return-code families on NULL handles.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude tests/abi/abi_c11.c \
 *            -Ltarget/release -lmooncake -Wl,-z,now [-DEXPECT_VERSION_MAJOR=… …]
 * (ci/test-c.sh passes the version of Cargo.toml as EXPECT_VERSION_MAJOR/MINOR/PATCH.)
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "transfer_engine_c.h"
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

LAYOUT(struct transfer_request, 40, 8);
OFFSET(struct transfer_request, opcode, 0);
OFFSET(struct transfer_request, source, 8);
OFFSET(struct transfer_request, target_id, 16);
OFFSET(struct transfer_request, target_offset, 24);
OFFSET(struct transfer_request, length, 32);

LAYOUT(struct notify_msg, 16, 8);
OFFSET(struct notify_msg, name, 0);
OFFSET(struct notify_msg, msg, 8);

LAYOUT(struct transfer_status, 16, 8);
OFFSET(struct transfer_status, status, 0);
OFFSET(struct transfer_status, transferred_bytes, 8);

LAYOUT(struct segment_desc, 48, 8);
OFFSET(struct segment_desc, type, 0);
OFFSET(struct segment_desc, desc_, 8);
OFFSET(struct segment_desc, desc_.rdma, 8);
OFFSET(struct segment_desc, desc_.rdma.addr, 8);
OFFSET(struct segment_desc, desc_.rdma.size, 16);
OFFSET(struct segment_desc, desc_.rdma.location, 24);
OFFSET(struct segment_desc, desc_.nvmeof, 8);
OFFSET(struct segment_desc, desc_.nvmeof.file_path, 8);
OFFSET(struct segment_desc, desc_.nvmeof.subsystem_name, 16);
OFFSET(struct segment_desc, desc_.nvmeof.proto, 24);
OFFSET(struct segment_desc, desc_.nvmeof.ip, 32);
OFFSET(struct segment_desc, desc_.nvmeof.port, 40);
/* The union and its members are reached through an object, as Mooncake's are anonymous. */
_Static_assert(sizeof(((struct segment_desc *)0)->desc_) == 40, "segment_desc.desc_: size");
_Static_assert(sizeof(((struct segment_desc *)0)->desc_.rdma) == 24, "desc_.rdma: size");
_Static_assert(sizeof(((struct segment_desc *)0)->desc_.nvmeof) == 40, "desc_.nvmeof: size");

LAYOUT(struct buffer_entry, 16, 8);
OFFSET(struct buffer_entry, addr, 0);
OFFSET(struct buffer_entry, length, 8);

LAYOUT(struct nic_load_stat, 80, 8);
OFFSET(struct nic_load_stat, device_name, 0);
OFFSET(struct nic_load_stat, inflight_bytes, 64);
OFFSET(struct nic_load_stat, ewma_bandwidth_bps, 72);

/* ---- field types ----------------------------------------------------------------------------- */

#define FIELD(type, member, ftype) \
    _Static_assert(SAME_TYPE(((type *)0)->member, ftype), #type "." #member ": type")

FIELD(struct transfer_request, opcode, int);
FIELD(struct transfer_request, source, void *);
FIELD(struct transfer_request, target_id, int32_t);
FIELD(struct transfer_request, target_offset, uint64_t);
FIELD(struct transfer_request, length, uint64_t);
FIELD(struct notify_msg, name, char *);
FIELD(struct notify_msg, msg, char *);
FIELD(struct transfer_status, status, int);
FIELD(struct transfer_status, transferred_bytes, uint64_t);
FIELD(struct segment_desc, type, int);
FIELD(struct segment_desc, desc_.rdma.addr, void *);
FIELD(struct segment_desc, desc_.rdma.size, uint64_t);
FIELD(struct segment_desc, desc_.rdma.location, const char *);
FIELD(struct segment_desc, desc_.nvmeof.file_path, const char *);
FIELD(struct segment_desc, desc_.nvmeof.subsystem_name, const char *);
FIELD(struct segment_desc, desc_.nvmeof.proto, const char *);
FIELD(struct segment_desc, desc_.nvmeof.ip, const char *);
FIELD(struct segment_desc, desc_.nvmeof.port, uint64_t);
FIELD(struct buffer_entry, addr, void *);
FIELD(struct buffer_entry, length, size_t);
FIELD(struct nic_load_stat, inflight_bytes, uint64_t);
FIELD(struct nic_load_stat, ewma_bandwidth_bps, double);
/* An array member decays in _Generic; its address keeps the array type. */
_Static_assert(SAME_TYPE(&((struct nic_load_stat *)0)->device_name, char(*)[64]),
               "nic_load_stat.device_name: type");

/* ---- 3. type names ------------------------------------------------------------------------- */

#define TYPE_NAME(name, type) _Static_assert(SAME_TYPE((name *)0, type *), #name " is " #type)

TYPE_NAME(segment_handle_t, int32_t);
TYPE_NAME(segment_id_t, int32_t);
TYPE_NAME(batch_id_t, uint64_t);
TYPE_NAME(transfer_request_t, struct transfer_request);
TYPE_NAME(notify_msg_t, struct notify_msg);
TYPE_NAME(transfer_status_t, struct transfer_status);
TYPE_NAME(buffer_entry_t, struct buffer_entry);
TYPE_NAME(segment_desc_t, struct segment_desc);
TYPE_NAME(nic_load_stat_t, struct nic_load_stat);
TYPE_NAME(transfer_engine_t, void *);
TYPE_NAME(transport_t, void *);

/* ---- 2. constants -------------------------------------------------------------------------- */

/* Mooncake defines these with #define; programs may test them in the preprocessor. */
#if !defined(LOCAL_SEGMENT) || !defined(INVALID_BATCH) || !defined(OPCODE_READ) ||          \
    !defined(OPCODE_WRITE) || !defined(STATUS_WAITING) || !defined(STATUS_PENDING) ||       \
    !defined(STATUS_INVALID) || !defined(STATUS_CANCELED) || !defined(STATUS_COMPLETED) ||  \
    !defined(STATUS_TIMEOUT) || !defined(STATUS_FAILED)
#error "a constant of Mooncake's transfer_engine_c.h is not a macro"
#endif
#if LOCAL_SEGMENT != 0 || OPCODE_READ != 0 || OPCODE_WRITE != 1 || STATUS_WAITING != 0 ||     \
    STATUS_PENDING != 1 || STATUS_INVALID != 2 || STATUS_CANCELED != 3 ||                      \
    STATUS_COMPLETED != 4 || STATUS_TIMEOUT != 5 || STATUS_FAILED != 6 ||                      \
    INVALID_BATCH != UINT64_MAX
#error "a constant of transfer_engine_c.h has the wrong value in #if"
#endif

#define CONSTANT(name, value) _Static_assert((name) == (value), #name " == " #value)

CONSTANT(LOCAL_SEGMENT, 0);
CONSTANT(INVALID_BATCH, UINT64_MAX);
_Static_assert(SAME_TYPE(INVALID_BATCH, uint64_t), "INVALID_BATCH is a uint64_t");
CONSTANT(OPCODE_READ, 0);
CONSTANT(OPCODE_WRITE, 1);
CONSTANT(STATUS_WAITING, 0);
CONSTANT(STATUS_PENDING, 1);
CONSTANT(STATUS_INVALID, 2);
CONSTANT(STATUS_CANCELED, 3);
CONSTANT(STATUS_COMPLETED, 4);
CONSTANT(STATUS_TIMEOUT, 5);
CONSTANT(STATUS_FAILED, 6);

/* ERR_*: the negative family (every int function but the four batch ones). */
CONSTANT(ERR_INVALID_ARGUMENT, -1);
CONSTANT(ERR_TOO_MANY_REQUESTS, -2);
CONSTANT(ERR_ADDRESS_NOT_REGISTERED, -3);
CONSTANT(ERR_BATCH_BUSY, -4);
CONSTANT(ERR_DEVICE_NOT_FOUND, -6);
CONSTANT(ERR_ADDRESS_OVERLAPPED, -7);
CONSTANT(ERR_DNS, -101);
CONSTANT(ERR_SOCKET, -102);
CONSTANT(ERR_MALFORMED_JSON, -103);
CONSTANT(ERR_REJECT_HANDSHAKE, -104);
CONSTANT(ERR_METADATA, -200);
CONSTANT(ERR_ENDPOINT, -201);
CONSTANT(ERR_CONTEXT, -202);
CONSTANT(ERR_NUMA, -300);
CONSTANT(ERR_CLOCK, -301);
CONSTANT(ERR_MEMORY, -302);
CONSTANT(ERR_NOT_IMPLEMENTED, -303);
/* Parenthesised like Mooncake's error.h: `x-ERR_DNS` must parse as x - (-101). */
_Static_assert(1 - ERR_INVALID_ARGUMENT == 2, "ERR_* are parenthesised");

/* MOONCAKE_STATUS_*: the positive family (submitTransfer, submitTransferWithNotify,
 * getTransferStatus, freeBatchID). */
CONSTANT(MOONCAKE_STATUS_OK, 0);
CONSTANT(MOONCAKE_STATUS_INVALID_ARGUMENT, 1);
CONSTANT(MOONCAKE_STATUS_TOO_MANY_REQUESTS, 2);
CONSTANT(MOONCAKE_STATUS_ADDRESS_NOT_REGISTERED, 3);
CONSTANT(MOONCAKE_STATUS_BATCH_BUSY, 4);
CONSTANT(MOONCAKE_STATUS_NOT_SUPPORTED_TRANSPORT, 8);
CONSTANT(MOONCAKE_STATUS_DNS, 101);
CONSTANT(MOONCAKE_STATUS_SOCKET, 102);
CONSTANT(MOONCAKE_STATUS_MALFORMED_JSON, 103);
CONSTANT(MOONCAKE_STATUS_REJECT_HANDSHAKE, 104);
CONSTANT(MOONCAKE_STATUS_METADATA, 200);
CONSTANT(MOONCAKE_STATUS_ENDPOINT, 201);
CONSTANT(MOONCAKE_STATUS_CONTEXT, 202);
CONSTANT(MOONCAKE_STATUS_NUMA, 300);
CONSTANT(MOONCAKE_STATUS_CLOCK, 301);
CONSTANT(MOONCAKE_STATUS_MEMORY, 302);
CONSTANT(MOONCAKE_STATUS_NOT_IMPLEMENTED, 999);

/* The version macros: non-negative integers, and (when the build passes Cargo.toml's version)
 * that version. */
_Static_assert(MOONCAKE_VERSION_MAJOR >= 0 && MOONCAKE_VERSION_MINOR >= 0 &&
                   MOONCAKE_VERSION_PATCH >= 0,
               "MOONCAKE_VERSION_* are non-negative integer constants");
#if defined(EXPECT_VERSION_MAJOR) && defined(EXPECT_VERSION_MINOR) && defined(EXPECT_VERSION_PATCH)
CONSTANT(MOONCAKE_VERSION_MAJOR, EXPECT_VERSION_MAJOR);
CONSTANT(MOONCAKE_VERSION_MINOR, EXPECT_VERSION_MINOR);
CONSTANT(MOONCAKE_VERSION_PATCH, EXPECT_VERSION_PATCH);
#define VERSION_FROM_CARGO 1
#else
#define VERSION_FROM_CARGO 0
#endif

/* ---- 4. prototypes, as Mooncake's transfer_engine_c.h declares them ----------------------- */

transfer_engine_t createTransferEngine(const char *metadata_conn_string,
                                       const char *local_server_name,
                                       const char *ip_or_host_name, uint64_t rpc_port,
                                       int auto_discover);
int discoverTopology(transfer_engine_t engine);
int getLocalIpAndPort(transfer_engine_t engine, char *buf_out, size_t buf_len);
transport_t installTransport(transfer_engine_t engine, const char *proto, void **args);
int uninstallTransport(transfer_engine_t engine, const char *proto);
segment_id_t openSegment(transfer_engine_t engine, const char *segment_name);
segment_id_t openSegmentNoCache(transfer_engine_t engine, const char *segment_name);
int closeSegment(transfer_engine_t engine, segment_id_t segment_id);
int warmupEfaSegment(transfer_engine_t engine, const char *segment_name);
int removeLocalSegment(transfer_engine_t engine, const char *segment_name);
void destroyTransferEngine(transfer_engine_t engine);
int registerLocalMemory(transfer_engine_t engine, void *addr, size_t length,
                        const char *location, int remote_accessible);
int unregisterLocalMemory(transfer_engine_t engine, void *addr);
int registerLocalMemoryBatch(transfer_engine_t engine, buffer_entry_t *buffer_list,
                             size_t buffer_len, const char *location);
int unregisterLocalMemoryBatch(transfer_engine_t engine, void **addr_list, size_t addr_len);
batch_id_t allocateBatchID(transfer_engine_t engine, size_t batch_size);
int submitTransfer(transfer_engine_t engine, batch_id_t batch_id,
                   struct transfer_request *entries, size_t count);
int submitTransferWithNotify(transfer_engine_t engine, batch_id_t batch_id,
                             struct transfer_request *entries, size_t count,
                             notify_msg_t notify_msg);
notify_msg_t *getNotifsFromEngine(transfer_engine_t engine, int *size);
int freeNotifsMsgBuf(notify_msg_t *msg, int size);
int genNotifyInEngine(transfer_engine_t engine, uint64_t target_id, notify_msg_t notify_msg);
int getTransferStatus(transfer_engine_t engine, batch_id_t batch_id, size_t task_id,
                      struct transfer_status *status);
int freeBatchID(transfer_engine_t engine, batch_id_t batch_id);
int syncSegmentCache(transfer_engine_t engine);
int getNicLoadStats(transfer_engine_t engine, nic_load_stat_t *stats, size_t *count);
void enableGracefulShutdown(transfer_engine_t engine);
int showLinks(transfer_engine_t engine, char *buf_out, size_t buf_len, int json);

/* Our additions (mooncake.h). */
const char *mooncake_last_error(void);
const char *mooncake_version(void);
int mooncake_wait_batch(transfer_engine_t engine, batch_id_t batch_id, uint64_t timeout_ms);
int mooncake_release_batch(transfer_engine_t engine, batch_id_t batch_id);
int mooncake_transfer_sync(transfer_engine_t engine, transfer_request_t *entries, size_t count,
                           const notify_msg_t *notify, uint64_t timeout_ms);
int mooncake_segment_buffers(transfer_engine_t engine, segment_id_t segment_id,
                             buffer_entry_t *buffers, size_t *count);
int mooncake_send_probe(transfer_engine_t engine, const char *segment_name);
int mooncake_local_topology(transfer_engine_t engine, const char *device_names, char *buf,
                            size_t buf_len);

/* ---- 5. run time --------------------------------------------------------------------------- */

/* Taking every function's address makes the link fail on a symbol the library lacks. */
typedef void (*any_function)(void);
static const any_function ALL_FUNCTIONS[] = {
    (any_function)createTransferEngine,     (any_function)discoverTopology,
    (any_function)getLocalIpAndPort,        (any_function)installTransport,
    (any_function)uninstallTransport,       (any_function)openSegment,
    (any_function)openSegmentNoCache,       (any_function)closeSegment,
    (any_function)warmupEfaSegment,         (any_function)removeLocalSegment,
    (any_function)destroyTransferEngine,    (any_function)registerLocalMemory,
    (any_function)unregisterLocalMemory,    (any_function)registerLocalMemoryBatch,
    (any_function)unregisterLocalMemoryBatch, (any_function)allocateBatchID,
    (any_function)submitTransfer,           (any_function)submitTransferWithNotify,
    (any_function)getNotifsFromEngine,      (any_function)freeNotifsMsgBuf,
    (any_function)genNotifyInEngine,        (any_function)getTransferStatus,
    (any_function)freeBatchID,              (any_function)syncSegmentCache,
    (any_function)getNicLoadStats,          (any_function)enableGracefulShutdown,
    (any_function)showLinks,                (any_function)mooncake_last_error,
    (any_function)mooncake_version,         (any_function)mooncake_wait_batch,
    (any_function)mooncake_release_batch,   (any_function)mooncake_transfer_sync,
    (any_function)mooncake_segment_buffers, (any_function)mooncake_send_probe,
    (any_function)mooncake_local_topology,
};
#define FUNCTION_COUNT (sizeof ALL_FUNCTIONS / sizeof ALL_FUNCTIONS[0])
_Static_assert(FUNCTION_COUNT == 35, "27 Transfer Engine functions and 8 additions");

static int failures;

static void expect_int(const char *what, long long got, long long want) {
    if (got != want) {
        fprintf(stderr, "FAIL: %s returned %lld, expected %lld (last error: \"%s\")\n", what, got,
                want, mooncake_last_error());
        failures++;
    }
}

int main(void) {
    for (size_t i = 0; i < FUNCTION_COUNT; i++) {
        /* volatile: the compiler may not reason the addresses away. */
        any_function volatile f = ALL_FUNCTIONS[i];
        if (f == NULL) {
            fprintf(stderr, "FAIL: function %zu has a NULL address\n", i);
            failures++;
        }
    }

    const char *version = mooncake_version();
    char expected_version[64];
    snprintf(expected_version, sizeof expected_version, "%d.%d.%d", MOONCAKE_VERSION_MAJOR,
             MOONCAKE_VERSION_MINOR, MOONCAKE_VERSION_PATCH);
    if (version == NULL || strcmp(version, expected_version) != 0) {
        fprintf(stderr, "FAIL: mooncake_version() is \"%s\", the header says %s\n",
                version ? version : "(null)", expected_version);
        failures++;
    }

    const char *last = mooncake_last_error();
    if (last == NULL || last[0] != '\0') {
        fprintf(stderr, "FAIL: mooncake_last_error() before any failure is \"%s\", not \"\"\n",
                last ? last : "(null)");
        failures++;
    }

    /* Both return-code families, on a NULL engine (no engine, no network). */
    struct transfer_request request = {OPCODE_WRITE, NULL, LOCAL_SEGMENT, 0, 0};
    struct transfer_status status = {STATUS_WAITING, 0};
    expect_int("openSegment(NULL, ...)", openSegment(NULL, "127.0.0.1:1"), ERR_INVALID_ARGUMENT);
    last = mooncake_last_error();
    if (last == NULL || last[0] == '\0') {
        fprintf(stderr, "FAIL: mooncake_last_error() is empty after a failed call\n");
        failures++;
    }
    expect_int("registerLocalMemory(NULL, ...)",
               registerLocalMemory(NULL, &request, sizeof request, "cpu:0", 1),
               ERR_INVALID_ARGUMENT);
    expect_int("submitTransfer(NULL, ...)", submitTransfer(NULL, 1, &request, 1),
               MOONCAKE_STATUS_INVALID_ARGUMENT);
    expect_int("getTransferStatus(NULL, ...)", getTransferStatus(NULL, 1, 0, &status),
               MOONCAKE_STATUS_INVALID_ARGUMENT);
    expect_int("freeBatchID(NULL, ...)", freeBatchID(NULL, 1), MOONCAKE_STATUS_INVALID_ARGUMENT);
    if (allocateBatchID(NULL, 1) != INVALID_BATCH) {
        fprintf(stderr, "FAIL: allocateBatchID(NULL, 1) is not INVALID_BATCH\n");
        failures++;
    }
    expect_int("freeNotifsMsgBuf(NULL, 0)", freeNotifsMsgBuf(NULL, 0), 0);
    destroyTransferEngine(NULL); /* a no-op */

    if (failures != 0) {
        fprintf(stderr, "abi_c11: %d failure(s)\n", failures);
        return 1;
    }
    printf("abi_c11: layouts, constants, types and %zu prototypes match; version %s%s\n",
           (size_t)FUNCTION_COUNT, version,
           VERSION_FROM_CARGO ? " (= Cargo.toml)" : " (Cargo.toml not given)");
    return 0;
}
