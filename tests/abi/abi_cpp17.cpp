// SPDX-License-Identifier: Apache-2.0
//
// abi_cpp17.cpp: the C++17 side of the ABI check (see abi_c11.c for the C side). A C++
// program built against Mooncake's transfer_engine_c.h must build unchanged against ours:
//
//  1. sizeof / alignof / offsetof of every struct, union members included, and that every
//     struct stays a standard-layout, trivially copyable aggregate;
//  2. the value (and type) of every constant;
//  3. the type behind every type name and every field (std::is_same_v);
//  4. every function: redeclared inside extern "C" as Mooncake's header declares it (C
//     linkage makes a conflicting declaration an error rather than an overload), and its
//     exact function-pointer type;
//  5. at run time (linked against libmooncake.so): the version, the last-error string, and
//     the two return-code families on NULL handles.
//
// Build (ci/test-c.sh passes Cargo.toml's version as EXPECT_VERSION_MAJOR/MINOR/PATCH):
//   g++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude tests/abi/abi_cpp17.cpp
//       -Ltarget/release -lmooncake -Wl,-z,now [-DEXPECT_VERSION_MAJOR=… …]

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <type_traits>

#include "transfer_engine_c.h"
#include "mooncake.h"

#if !defined(__linux__) || !(defined(__x86_64__) || defined(__aarch64__))
#error "the layout values below are Mooncake's on LP64 Linux (x86_64, aarch64)"
#endif

using std::is_same_v;
using std::size_t;
using std::uint64_t;

// ---- 1. layouts ------------------------------------------------------------------------------

template <typename T>
constexpr bool c_compatible = std::is_standard_layout_v<T> && std::is_trivially_copyable_v<T> &&
                              std::is_aggregate_v<T>;

#define LAYOUT(type, size, align)                                                     \
    static_assert(sizeof(type) == (size) && alignof(type) == (align), #type ": size"); \
    static_assert(c_compatible<type>, #type ": a plain C struct")
#define OFFSET(type, member, off) \
    static_assert(offsetof(type, member) == (off), #type "." #member ": offset")

LAYOUT(transfer_request, 40, 8);
OFFSET(transfer_request, opcode, 0);
OFFSET(transfer_request, source, 8);
OFFSET(transfer_request, target_id, 16);
OFFSET(transfer_request, target_offset, 24);
OFFSET(transfer_request, length, 32);

LAYOUT(notify_msg, 16, 8);
OFFSET(notify_msg, name, 0);
OFFSET(notify_msg, msg, 8);

LAYOUT(transfer_status, 16, 8);
OFFSET(transfer_status, status, 0);
OFFSET(transfer_status, transferred_bytes, 8);

LAYOUT(segment_desc, 48, 8);
OFFSET(segment_desc, type, 0);
OFFSET(segment_desc, desc_, 8);
OFFSET(segment_desc, desc_.rdma, 8);
OFFSET(segment_desc, desc_.rdma.addr, 8);
OFFSET(segment_desc, desc_.rdma.size, 16);
OFFSET(segment_desc, desc_.rdma.location, 24);
OFFSET(segment_desc, desc_.nvmeof, 8);
OFFSET(segment_desc, desc_.nvmeof.file_path, 8);
OFFSET(segment_desc, desc_.nvmeof.subsystem_name, 16);
OFFSET(segment_desc, desc_.nvmeof.proto, 24);
OFFSET(segment_desc, desc_.nvmeof.ip, 32);
OFFSET(segment_desc, desc_.nvmeof.port, 40);
// Through decltype only: Mooncake's union and its structs have no names.
using desc_union = decltype(segment_desc::desc_);
static_assert(sizeof(desc_union) == 40 && std::is_union_v<desc_union>, "desc_: a 40-byte union");
static_assert(sizeof(desc_union::rdma) == 24, "desc_.rdma: size");
static_assert(sizeof(desc_union::nvmeof) == 40, "desc_.nvmeof: size");

LAYOUT(buffer_entry, 16, 8);
OFFSET(buffer_entry, addr, 0);
OFFSET(buffer_entry, length, 8);

LAYOUT(nic_load_stat, 80, 8);
OFFSET(nic_load_stat, device_name, 0);
OFFSET(nic_load_stat, inflight_bytes, 64);
OFFSET(nic_load_stat, ewma_bandwidth_bps, 72);

// ---- field types -----------------------------------------------------------------------------

// decltype of an unparenthesised member access is the member's declared type.
#define FIELD(type, member, ftype) \
    static_assert(is_same_v<decltype(static_cast<type *>(nullptr)->member), ftype>, \
                  #type "." #member ": type")

FIELD(transfer_request, opcode, int);
FIELD(transfer_request, source, void *);
FIELD(transfer_request, target_id, std::int32_t);
FIELD(transfer_request, target_offset, uint64_t);
FIELD(transfer_request, length, uint64_t);
FIELD(notify_msg, name, char *);
FIELD(notify_msg, msg, char *);
FIELD(transfer_status, status, int);
FIELD(transfer_status, transferred_bytes, uint64_t);
FIELD(segment_desc, type, int);
FIELD(segment_desc, desc_.rdma.addr, void *);
FIELD(segment_desc, desc_.rdma.size, uint64_t);
FIELD(segment_desc, desc_.rdma.location, const char *);
FIELD(segment_desc, desc_.nvmeof.file_path, const char *);
FIELD(segment_desc, desc_.nvmeof.subsystem_name, const char *);
FIELD(segment_desc, desc_.nvmeof.proto, const char *);
FIELD(segment_desc, desc_.nvmeof.ip, const char *);
FIELD(segment_desc, desc_.nvmeof.port, uint64_t);
FIELD(buffer_entry, addr, void *);
FIELD(buffer_entry, length, size_t);
FIELD(nic_load_stat, device_name, char[64]);
FIELD(nic_load_stat, inflight_bytes, uint64_t);
FIELD(nic_load_stat, ewma_bandwidth_bps, double);

// ---- 3. type names ---------------------------------------------------------------------------

static_assert(is_same_v<segment_handle_t, std::int32_t>, "segment_handle_t");
static_assert(is_same_v<segment_id_t, std::int32_t>, "segment_id_t");
static_assert(is_same_v<batch_id_t, uint64_t>, "batch_id_t");
static_assert(is_same_v<transfer_request_t, struct transfer_request>, "transfer_request_t");
static_assert(is_same_v<notify_msg_t, struct notify_msg>, "notify_msg_t");
static_assert(is_same_v<transfer_status_t, struct transfer_status>, "transfer_status_t");
static_assert(is_same_v<buffer_entry_t, struct buffer_entry>, "buffer_entry_t");
static_assert(is_same_v<segment_desc_t, struct segment_desc>, "segment_desc_t");
static_assert(is_same_v<nic_load_stat_t, struct nic_load_stat>, "nic_load_stat_t");
static_assert(is_same_v<transfer_engine_t, void *>, "transfer_engine_t");
static_assert(is_same_v<transport_t, void *>, "transport_t");

// ---- 2. constants ----------------------------------------------------------------------------

#if !defined(LOCAL_SEGMENT) || !defined(INVALID_BATCH) || !defined(OPCODE_READ) ||          \
    !defined(OPCODE_WRITE) || !defined(STATUS_WAITING) || !defined(STATUS_PENDING) ||       \
    !defined(STATUS_INVALID) || !defined(STATUS_CANCELED) || !defined(STATUS_COMPLETED) ||  \
    !defined(STATUS_TIMEOUT) || !defined(STATUS_FAILED)
#error "a constant of Mooncake's transfer_engine_c.h is not a macro"
#endif

#define CONSTANT(name, value) static_assert((name) == (value), #name " == " #value)

CONSTANT(LOCAL_SEGMENT, 0);
CONSTANT(INVALID_BATCH, UINT64_MAX);
static_assert(is_same_v<decltype(INVALID_BATCH), uint64_t>, "INVALID_BATCH is a uint64_t");
CONSTANT(OPCODE_READ, 0);
CONSTANT(OPCODE_WRITE, 1);
CONSTANT(STATUS_WAITING, 0);
CONSTANT(STATUS_PENDING, 1);
CONSTANT(STATUS_INVALID, 2);
CONSTANT(STATUS_CANCELED, 3);
CONSTANT(STATUS_COMPLETED, 4);
CONSTANT(STATUS_TIMEOUT, 5);
CONSTANT(STATUS_FAILED, 6);

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
static_assert(1 - ERR_INVALID_ARGUMENT == 2, "ERR_* are parenthesised");

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

static_assert(MOONCAKE_VERSION_MAJOR >= 0 && MOONCAKE_VERSION_MINOR >= 0 &&
                  MOONCAKE_VERSION_PATCH >= 0,
              "MOONCAKE_VERSION_* are non-negative integer constants");
#if defined(EXPECT_VERSION_MAJOR) && defined(EXPECT_VERSION_MINOR) && defined(EXPECT_VERSION_PATCH)
CONSTANT(MOONCAKE_VERSION_MAJOR, EXPECT_VERSION_MAJOR);
CONSTANT(MOONCAKE_VERSION_MINOR, EXPECT_VERSION_MINOR);
CONSTANT(MOONCAKE_VERSION_PATCH, EXPECT_VERSION_PATCH);
constexpr bool kVersionFromCargo = true;
#else
constexpr bool kVersionFromCargo = false;
#endif

// ---- 4. prototypes, as Mooncake's transfer_engine_c.h declares them ------------------------

extern "C" {
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

// Our additions (mooncake.h).
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
}

// The exact function types (no overload or default argument may sneak in).
#define SIGNATURE(fn, type) static_assert(is_same_v<decltype(&fn), type>, #fn ": signature")
using engine_t = transfer_engine_t;
SIGNATURE(createTransferEngine,
          engine_t (*)(const char *, const char *, const char *, uint64_t, int));
SIGNATURE(discoverTopology, int (*)(engine_t));
SIGNATURE(getLocalIpAndPort, int (*)(engine_t, char *, size_t));
SIGNATURE(installTransport, transport_t (*)(engine_t, const char *, void **));
SIGNATURE(uninstallTransport, int (*)(engine_t, const char *));
SIGNATURE(openSegment, segment_id_t (*)(engine_t, const char *));
SIGNATURE(openSegmentNoCache, segment_id_t (*)(engine_t, const char *));
SIGNATURE(closeSegment, int (*)(engine_t, segment_id_t));
SIGNATURE(warmupEfaSegment, int (*)(engine_t, const char *));
SIGNATURE(removeLocalSegment, int (*)(engine_t, const char *));
SIGNATURE(destroyTransferEngine, void (*)(engine_t));
SIGNATURE(registerLocalMemory, int (*)(engine_t, void *, size_t, const char *, int));
SIGNATURE(unregisterLocalMemory, int (*)(engine_t, void *));
SIGNATURE(registerLocalMemoryBatch, int (*)(engine_t, buffer_entry_t *, size_t, const char *));
SIGNATURE(unregisterLocalMemoryBatch, int (*)(engine_t, void **, size_t));
SIGNATURE(allocateBatchID, batch_id_t (*)(engine_t, size_t));
SIGNATURE(submitTransfer, int (*)(engine_t, batch_id_t, transfer_request *, size_t));
SIGNATURE(submitTransferWithNotify,
          int (*)(engine_t, batch_id_t, transfer_request *, size_t, notify_msg_t));
SIGNATURE(getNotifsFromEngine, notify_msg_t *(*)(engine_t, int *));
SIGNATURE(freeNotifsMsgBuf, int (*)(notify_msg_t *, int));
SIGNATURE(genNotifyInEngine, int (*)(engine_t, uint64_t, notify_msg_t));
SIGNATURE(getTransferStatus, int (*)(engine_t, batch_id_t, size_t, transfer_status *));
SIGNATURE(freeBatchID, int (*)(engine_t, batch_id_t));
SIGNATURE(syncSegmentCache, int (*)(engine_t));
SIGNATURE(getNicLoadStats, int (*)(engine_t, nic_load_stat_t *, size_t *));
SIGNATURE(enableGracefulShutdown, void (*)(engine_t));
SIGNATURE(showLinks, int (*)(engine_t, char *, size_t, int));
SIGNATURE(mooncake_last_error, const char *(*)());
SIGNATURE(mooncake_version, const char *(*)());
SIGNATURE(mooncake_wait_batch, int (*)(engine_t, batch_id_t, uint64_t));
SIGNATURE(mooncake_release_batch, int (*)(engine_t, batch_id_t));
SIGNATURE(mooncake_transfer_sync,
          int (*)(engine_t, transfer_request_t *, size_t, const notify_msg_t *, uint64_t));
SIGNATURE(mooncake_segment_buffers, int (*)(engine_t, segment_id_t, buffer_entry_t *, size_t *));
SIGNATURE(mooncake_send_probe, int (*)(engine_t, const char *));
SIGNATURE(mooncake_local_topology, int (*)(engine_t, const char *, char *, size_t));

// How Mooncake's C++ callers fill the structs: aggregate initialisation must keep compiling.
[[maybe_unused]] static void initialisers_compile(void *buf, char *name, char *msg) {
    transfer_request_t request{OPCODE_WRITE, buf, LOCAL_SEGMENT, 0, 4096};
    notify_msg_t note{name, msg};
    transfer_status_t status{STATUS_COMPLETED, 4096};
    buffer_entry_t entry{buf, 4096};
    segment_desc_t desc{};
    desc.desc_.rdma.addr = buf;
    desc.desc_.nvmeof.port = 4420;
    nic_load_stat_t stat{};
    stat.device_name[0] = 'x';
    (void)request, (void)note, (void)status, (void)entry, (void)desc, (void)stat;
}

// ---- 5. run time -----------------------------------------------------------------------------

namespace {

int failures = 0;

void expect(bool ok, const std::string &what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s (last error: \"%s\")\n", what.c_str(),
                     mooncake_last_error());
        ++failures;
    }
}

}  // namespace

int main() {
    // Every address is taken: the link fails on a symbol the library lacks.
    using any_function = void (*)();
    const any_function all[] = {
        reinterpret_cast<any_function>(&createTransferEngine),
        reinterpret_cast<any_function>(&discoverTopology),
        reinterpret_cast<any_function>(&getLocalIpAndPort),
        reinterpret_cast<any_function>(&installTransport),
        reinterpret_cast<any_function>(&uninstallTransport),
        reinterpret_cast<any_function>(&openSegment),
        reinterpret_cast<any_function>(&openSegmentNoCache),
        reinterpret_cast<any_function>(&closeSegment),
        reinterpret_cast<any_function>(&warmupEfaSegment),
        reinterpret_cast<any_function>(&removeLocalSegment),
        reinterpret_cast<any_function>(&destroyTransferEngine),
        reinterpret_cast<any_function>(&registerLocalMemory),
        reinterpret_cast<any_function>(&unregisterLocalMemory),
        reinterpret_cast<any_function>(&registerLocalMemoryBatch),
        reinterpret_cast<any_function>(&unregisterLocalMemoryBatch),
        reinterpret_cast<any_function>(&allocateBatchID),
        reinterpret_cast<any_function>(&submitTransfer),
        reinterpret_cast<any_function>(&submitTransferWithNotify),
        reinterpret_cast<any_function>(&getNotifsFromEngine),
        reinterpret_cast<any_function>(&freeNotifsMsgBuf),
        reinterpret_cast<any_function>(&genNotifyInEngine),
        reinterpret_cast<any_function>(&getTransferStatus),
        reinterpret_cast<any_function>(&freeBatchID),
        reinterpret_cast<any_function>(&syncSegmentCache),
        reinterpret_cast<any_function>(&getNicLoadStats),
        reinterpret_cast<any_function>(&enableGracefulShutdown),
        reinterpret_cast<any_function>(&showLinks),
        reinterpret_cast<any_function>(&mooncake_last_error),
        reinterpret_cast<any_function>(&mooncake_version),
        reinterpret_cast<any_function>(&mooncake_wait_batch),
        reinterpret_cast<any_function>(&mooncake_release_batch),
        reinterpret_cast<any_function>(&mooncake_transfer_sync),
        reinterpret_cast<any_function>(&mooncake_segment_buffers),
        reinterpret_cast<any_function>(&mooncake_send_probe),
        reinterpret_cast<any_function>(&mooncake_local_topology),
    };
    static_assert(std::size(all) == 35, "27 Transfer Engine functions and 8 additions");
    for (const any_function &f : all) {
        const any_function volatile addr = f;  // volatile: keep the check at run time
        expect(addr != nullptr, "a function has a NULL address");
    }

    const char *version = mooncake_version();
    const std::string header_version = std::to_string(MOONCAKE_VERSION_MAJOR) + "." +
                                       std::to_string(MOONCAKE_VERSION_MINOR) + "." +
                                       std::to_string(MOONCAKE_VERSION_PATCH);
    expect(version != nullptr && header_version == version,
           "mooncake_version() differs from MOONCAKE_VERSION_* (" + header_version + ")");

    const char *last = mooncake_last_error();
    expect(last != nullptr && *last == '\0', "mooncake_last_error() is not \"\" before a failure");

    // Both return-code families, on a NULL engine (no engine, no network).
    transfer_request_t request{OPCODE_WRITE, nullptr, LOCAL_SEGMENT, 0, 0};
    transfer_status_t status{STATUS_WAITING, 0};
    expect(openSegment(nullptr, "127.0.0.1:1") == ERR_INVALID_ARGUMENT,
           "openSegment(NULL) is not ERR_INVALID_ARGUMENT");
    last = mooncake_last_error();
    expect(last != nullptr && *last != '\0', "mooncake_last_error() is empty after a failure");
    expect(registerLocalMemory(nullptr, &request, sizeof request, "cpu:0", 1) ==
               ERR_INVALID_ARGUMENT,
           "registerLocalMemory(NULL) is not ERR_INVALID_ARGUMENT");
    expect(submitTransfer(nullptr, 1, &request, 1) == MOONCAKE_STATUS_INVALID_ARGUMENT,
           "submitTransfer(NULL) is not MOONCAKE_STATUS_INVALID_ARGUMENT");
    expect(getTransferStatus(nullptr, 1, 0, &status) == MOONCAKE_STATUS_INVALID_ARGUMENT,
           "getTransferStatus(NULL) is not MOONCAKE_STATUS_INVALID_ARGUMENT");
    expect(freeBatchID(nullptr, 1) == MOONCAKE_STATUS_INVALID_ARGUMENT,
           "freeBatchID(NULL) is not MOONCAKE_STATUS_INVALID_ARGUMENT");
    expect(allocateBatchID(nullptr, 1) == INVALID_BATCH, "allocateBatchID(NULL) is not INVALID_BATCH");
    expect(freeNotifsMsgBuf(nullptr, 0) == 0, "freeNotifsMsgBuf(NULL, 0) is not 0");
    destroyTransferEngine(nullptr);  // a no-op

    if (failures != 0) {
        std::fprintf(stderr, "abi_cpp17: %d failure(s)\n", failures);
        return 1;
    }
    std::printf("abi_cpp17: layouts, constants, types and %zu signatures match; version %s%s\n",
                std::size(all), version, kVersionFromCargo ? " (= Cargo.toml)" : " (Cargo.toml not given)");
    return 0;
}
