/* SPDX-License-Identifier: Apache-2.0 */
/*
 * transfer_example.c: an end-to-end tour of the Transfer Engine C API of libmooncake (C11).
 *
 * Run it with no argument. It starts two copies of itself on 127.0.0.1:
 *   target     registers a 256 MiB buffer, prints "READY <segment name> <buffer address>" on
 *              its stdout (a pipe to the parent), then waits for two notifications and for the
 *              parent's verdict ("DONE ok" / "DONE fail") on its stdin, and finally checks that
 *              its buffer holds what the initiator wrote last.
 *   initiator  opens the target's segment, writes 256 MiB into it and reads it back into a
 *              second buffer, first in 1 MiB requests and then in 4 KiB requests (each time
 *              with another byte pattern), and compares every byte. One batch goes out with
 *              submitTransferWithNotify and one message with genNotifyInEngine.
 * The exit status is 0 only if both children succeeded.
 *
 * Build (see ci/test-c.sh):
 *   gcc -std=c11 -O2 -Iinclude c_examples/transfer_example.c -Ltarget/release -lmooncake \
 *       -Wl,-rpath,target/release -o transfer_example
 */

/* fork, execv, pipe, poll, clock_gettime, nanosleep, kill, posix_memalign are POSIX. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transfer_engine_c.h"
#include "mooncake.h"

#define MIB ((size_t)1024 * 1024)
#define BUFFER_SIZE (256 * MIB)
#define LOCATION "cpu:0"

/* Every wait below is bounded; these are the bounds, in seconds. */
#define BATCH_TIMEOUT_S 60.0     /* one batch, from submit to the last task's end */
#define READY_TIMEOUT_S 30.0     /* target start-up, until it prints READY */
#define INITIATOR_TIMEOUT_S 240.0
#define TARGET_TIMEOUT_S 270.0   /* whole life of the target */
#define NOTIFY_GRACE_S 10.0      /* after the initiator is done, for notifications to land */

/* One pass over the whole buffer: write it all, read it all back, compare. */
struct phase {
    const char *label;
    size_t request_size;
    size_t requests_per_batch;
    uint64_t seed; /* of the byte pattern */
};

static const struct phase PHASES[] = {
    {"1 MiB", 1 * MIB, 64, 0x4d6f6f6e63616b65u},
    {"4 KiB", 4096, 4096, 0x0123456789abcdefu},
};
#define PHASE_COUNT (sizeof PHASES / sizeof PHASES[0])
#define MAX_REQUESTS_PER_BATCH 4096

/* The name both notifications carry; their texts also carry the parent's token so that the
 * target only accepts messages of this run. */
#define NOTIFY_NAME "transfer_example.initiator"

static const char *g_role = "main";

/* ---- small helpers ------------------------------------------------------------------------ */

#if defined(__GNUC__)
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif

/* Progress and errors go to stderr, prefixed by the role; stdout carries results only. */
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", g_role);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reports a failed library call: its name, its return code and the library's own account. */
static void report_failure(const char *function, long long code) {
    say("%s failed: code %lld: %s", function, code, mooncake_last_error());
}

/* The same for the calls that return a handle or an id instead of a code. */
static void report_bad_result(const char *function, const char *result) {
    say("%s failed: returned %s: %s", function, result, mooncake_last_error());
}

/* Calls an int-returning library function; a non-zero result is reported and jumps to `out`. */
#define CHECK(function, ...)                              \
    do {                                                  \
        int rc_ = function(__VA_ARGS__);                  \
        if (rc_ != 0) {                                   \
            report_failure(#function, rc_);               \
            goto out;                                     \
        }                                                 \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *status_name(int status) {
    switch (status) {
    case STATUS_WAITING: return "WAITING";
    case STATUS_PENDING: return "PENDING";
    case STATUS_INVALID: return "INVALID";
    case STATUS_CANCELED: return "CANCELED";
    case STATUS_COMPLETED: return "COMPLETED";
    case STATUS_TIMEOUT: return "TIMEOUT";
    case STATUS_FAILED: return "FAILED";
    default: return "unknown";
    }
}

/* splitmix64's finaliser: every 8-byte word of a pattern depends on its position, so a
 * request that lands at the wrong offset is caught, not only a wrong byte. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x;
}

static uint64_t pattern_word(uint64_t seed, size_t word) {
    return mix64(seed + (uint64_t)word * 0x9e3779b97f4a7c15u);
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t seed) {
    for (size_t w = 0; w < len / 8; w++) {
        uint64_t v = pattern_word(seed, w);
        memcpy(buf + 8 * w, &v, 8);
    }
}

/* Returns the offset of the first byte that differs from the pattern, or `len`. */
static size_t find_pattern_mismatch(const uint8_t *buf, size_t len, uint64_t seed) {
    for (size_t w = 0; w < len / 8; w++) {
        uint64_t want = pattern_word(seed, w);
        if (memcmp(buf + 8 * w, &want, 8) != 0) {
            for (size_t i = 0; i < 8; i++)
                if (buf[8 * w + i] != ((const uint8_t *)&want)[i]) return 8 * w + i;
        }
    }
    return len;
}

static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t len) {
    const size_t chunk = 4096;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        if (memcmp(a + off, b + off, n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (a[off + i] != b[off + i]) return off + i;
        }
    }
    return len;
}

/* Page-aligned, zeroed (so every page is touched before the timing starts). */
static uint8_t *alloc_buffer(size_t len) {
    void *p = NULL;
    int rc = posix_memalign(&p, 4096, len);
    if (rc != 0) {
        say("posix_memalign(%zu) failed: %s", len, strerror(rc));
        return NULL;
    }
    memset(p, 0, len);
    return p;
}

static void notify_text(char *out, size_t out_len, const char *what, const char *token) {
    snprintf(out, out_len, "%s token=%s", what, token);
}

/* ---- engine ------------------------------------------------------------------------------- */

/* Creates an engine on 127.0.0.1 and writes its segment name to `segment`. The metadata
 * string comes from MOONCAKE_METADATA (default "P2PHANDSHAKE"). With P2PHANDSHAKE the name is
 * "127.0.0.1:<port>", the port being the random handshake port that getLocalIpAndPort reports;
 * with a metadata server ("http://...", "etcd://...", "redis://...") it is the name the engine
 * was created with, unique per process here. */
static transfer_engine_t start_engine(char *segment, size_t segment_len) {
    const char *metadata = getenv("MOONCAKE_METADATA");
    if (metadata == NULL || metadata[0] == '\0') metadata = "P2PHANDSHAKE";
    const bool p2p = strcmp(metadata, "P2PHANDSHAKE") == 0;
    char name[64];
    if (p2p) snprintf(name, sizeof name, "127.0.0.1");
    else snprintf(name, sizeof name, "c-example-%ld", (long)getpid());
    transfer_engine_t engine = createTransferEngine(metadata, name, NULL, 0, 1);
    if (engine == NULL) {
        report_bad_result("createTransferEngine", "NULL");
        return NULL;
    }
    char ip_port[128];
    int rc = getLocalIpAndPort(engine, ip_port, sizeof ip_port);
    if (rc != 0) {
        report_failure("getLocalIpAndPort", rc);
        destroyTransferEngine(engine);
        return NULL;
    }
    const char *colon = strrchr(ip_port, ':');
    if (colon == NULL || colon[1] == '\0') {
        say("getLocalIpAndPort wrote \"%s\", which is not \"ip:port\"", ip_port);
        destroyTransferEngine(engine);
        return NULL;
    }
    if (p2p) snprintf(segment, segment_len, "127.0.0.1:%s", colon + 1);
    else snprintf(segment, segment_len, "%s", name);
    say("engine up (%s): getLocalIpAndPort says \"%s\", segment \"%s\"", metadata, ip_port, segment);
    return engine;
}

/* ---- batches ------------------------------------------------------------------------------ */

/* Polls every task of `batch` until it has ended; true when all completed with all bytes.
 * After a failed task it keeps polling the rest, so that the batch can still be freed. */
static bool wait_batch(transfer_engine_t engine, batch_id_t batch,
                       const struct transfer_request *requests, size_t count) {
    double deadline = now_s() + BATCH_TIMEOUT_S;
    bool ok = true;
    size_t task = 0;
    while (task < count) {
        struct transfer_status st;
        int rc = getTransferStatus(engine, batch, task, &st);
        if (rc != 0) {
            report_failure("getTransferStatus", rc);
            return false;
        }
        if (st.status == STATUS_WAITING || st.status == STATUS_PENDING) {
            if (now_s() > deadline) {
                say("task %zu still %s after %.0f s", task, status_name(st.status),
                    BATCH_TIMEOUT_S);
                return false;
            }
            sleep_us(20);
            continue;
        }
        if (st.status != STATUS_COMPLETED) {
            /* The failure happened on a library thread: mooncake_last_error() of this thread
             * does not describe it (the library logs it). */
            if (ok)
                say("task %zu ended %s (%d) after %" PRIu64 " bytes", task,
                    status_name(st.status), st.status, st.transferred_bytes);
            ok = false;
        } else if (st.transferred_bytes != requests[task].length) {
            say("task %zu completed with transferred_bytes %" PRIu64 ", expected %" PRIu64, task,
                st.transferred_bytes, requests[task].length);
            ok = false;
        }
        task++;
    }
    return ok;
}

/* Runs one batch: allocate, submit (with `notify` when non-NULL), wait, free. */
static bool run_batch(transfer_engine_t engine, struct transfer_request *requests, size_t count,
                      const notify_msg_t *notify) {
    batch_id_t batch = allocateBatchID(engine, count);
    if (batch == INVALID_BATCH) {
        report_bad_result("allocateBatchID", "INVALID_BATCH");
        return false;
    }
    bool ok;
    int rc = notify != NULL ? submitTransferWithNotify(engine, batch, requests, count, *notify)
                            : submitTransfer(engine, batch, requests, count);
    if (rc != 0) {
        report_failure(notify != NULL ? "submitTransferWithNotify" : "submitTransfer", rc);
        ok = false;
    } else {
        ok = wait_batch(engine, batch, requests, count);
    }
    rc = freeBatchID(engine, batch);
    if (rc != 0) {
        report_failure("freeBatchID", rc);
        ok = false;
    }
    return ok;
}

/* Moves the whole buffer between `local` and the remote `remote_addr` of `segment`, in
 * `phase->request_size` requests; the last batch carries `notify` when it is non-NULL. */
static bool transfer_buffer(transfer_engine_t engine, int opcode, uint8_t *local,
                            segment_id_t segment, uint64_t remote_addr, const struct phase *phase,
                            struct transfer_request *scratch, const notify_msg_t *notify) {
    const size_t per_batch_bytes = phase->request_size * phase->requests_per_batch;
    for (size_t off = 0; off < BUFFER_SIZE; off += per_batch_bytes) {
        size_t count = phase->requests_per_batch;
        if ((BUFFER_SIZE - off) / phase->request_size < count)
            count = (BUFFER_SIZE - off) / phase->request_size;
        for (size_t i = 0; i < count; i++) {
            size_t at = off + i * phase->request_size;
            scratch[i] = (struct transfer_request){
                .opcode = opcode,
                .source = local + at,
                .target_id = segment,
                .target_offset = remote_addr + at,
                .length = phase->request_size,
            };
        }
        bool last = off + count * phase->request_size >= BUFFER_SIZE;
        if (!run_batch(engine, scratch, count, last ? notify : NULL)) {
            say("%s %s batch at offset %zu failed", phase->label,
                opcode == OPCODE_WRITE ? "write" : "read", off);
            return false;
        }
    }
    return true;
}

/* ---- initiator ---------------------------------------------------------------------------- */

static int run_initiator(const char *target_segment, const char *address_text,
                         const char *token) {
    int result = 1;
    char segment[160];
    char batch_text[128], direct_text[128];
    uint8_t *source = alloc_buffer(BUFFER_SIZE);
    uint8_t *readback = alloc_buffer(BUFFER_SIZE);
    struct transfer_request *scratch = calloc(MAX_REQUESTS_PER_BATCH, sizeof *scratch);
    transfer_engine_t engine = NULL;
    bool source_registered = false, readback_registered = false;
    segment_id_t target = -1;

    char *end = NULL;
    errno = 0;
    uint64_t remote_addr = strtoull(address_text, &end, 0);
    if (errno != 0 || end == address_text || *end != '\0' || remote_addr == 0) {
        say("bad target address \"%s\"", address_text);
        goto out;
    }
    if (source == NULL || readback == NULL || scratch == NULL) goto out;
    if ((engine = start_engine(segment, sizeof segment)) == NULL) goto out;

    /* Local-only registrations: they are the local side of transfers, never a peer's target. */
    CHECK(registerLocalMemory, engine, source, BUFFER_SIZE, LOCATION, 0);
    source_registered = true;
    CHECK(registerLocalMemory, engine, readback, BUFFER_SIZE, LOCATION, 0);
    readback_registered = true;

    target = openSegment(engine, target_segment);
    if (target < 0) {
        report_failure("openSegment", target);
        goto out;
    }
    say("opened segment \"%s\" as id %d; remote buffer at 0x%" PRIx64, target_segment,
        (int)target, remote_addr);

    notify_text(batch_text, sizeof batch_text, "last 1 MiB write batch complete", token);
    notify_text(direct_text, sizeof direct_text, "every byte verified", token);
    const notify_msg_t batch_notify = {(char *)NOTIFY_NAME, batch_text};
    const notify_msg_t direct_notify = {(char *)NOTIFY_NAME, direct_text};

    size_t verified = 0;
    double total_moved_s = 0;
    double started = now_s();
    for (size_t p = 0; p < PHASE_COUNT; p++) {
        const struct phase *phase = &PHASES[p];
        fill_pattern(source, BUFFER_SIZE, phase->seed);
        memset(readback, 0, BUFFER_SIZE);

        double t0 = now_s();
        if (!transfer_buffer(engine, OPCODE_WRITE, source, target, remote_addr, phase, scratch,
                             p == 0 ? &batch_notify : NULL))
            goto out;
        double t1 = now_s();
        if (!transfer_buffer(engine, OPCODE_READ, readback, target, remote_addr, phase, scratch,
                             NULL))
            goto out;
        double t2 = now_s();

        size_t bad = first_difference(source, readback, BUFFER_SIZE);
        if (bad != BUFFER_SIZE) {
            say("%s phase: byte %zu read back as 0x%02x, wrote 0x%02x", phase->label, bad,
                readback[bad], source[bad]);
            goto out;
        }
        verified += BUFFER_SIZE;
        total_moved_s += t2 - t0;
        say("%s requests (%zu per batch): write %.3f s (%.2f GB/s), read %.3f s (%.2f GB/s), "
            "%zu bytes verified",
            phase->label, phase->requests_per_batch, t1 - t0, BUFFER_SIZE / (t1 - t0) / 1e9,
            t2 - t1, BUFFER_SIZE / (t2 - t1) / 1e9, (size_t)BUFFER_SIZE);
    }

    CHECK(genNotifyInEngine, engine, (uint64_t)target, direct_notify);
    CHECK(closeSegment, engine, target);

    printf("initiator: %zu bytes verified; %.2f GB moved in %.2f s of transfers (%.2f GB/s); "
           "%.2f s in all\n",
           verified, 2.0 * (double)verified / 1e9, total_moved_s,
           2.0 * (double)verified / total_moved_s / 1e9, now_s() - started);
    result = 0;

out:
    if (readback_registered) {
        int rc = unregisterLocalMemory(engine, readback);
        if (rc != 0) {
            report_failure("unregisterLocalMemory", rc);
            result = 1;
        }
    }
    if (source_registered) {
        int rc = unregisterLocalMemory(engine, source);
        if (rc != 0) {
            report_failure("unregisterLocalMemory", rc);
            result = 1;
        }
    }
    destroyTransferEngine(engine);
    free(scratch);
    free(readback);
    free(source);
    return result;
}

/* ---- target ------------------------------------------------------------------------------- */

/* The parent's verdict on the initiator, read from stdin. */
enum verdict { VERDICT_NONE, VERDICT_OK, VERDICT_FAIL };

/* Reads what is available on stdin (non-blocking after poll); returns the verdict once a full
 * "DONE ok" / "DONE fail" line has arrived (EOF without one counts as a failure). */
static enum verdict read_verdict(char *line, size_t line_cap, size_t *line_len) {
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    if (poll(&pfd, 1, 20) <= 0) return VERDICT_NONE;
    ssize_t n = read(STDIN_FILENO, line + *line_len, line_cap - 1 - *line_len);
    if (n < 0) return errno == EINTR ? VERDICT_NONE : VERDICT_FAIL;
    if (n == 0) {
        say("stdin closed without a verdict");
        return VERDICT_FAIL;
    }
    *line_len += (size_t)n;
    line[*line_len] = '\0';
    char *nl = strchr(line, '\n');
    if (nl == NULL) return *line_len + 1 >= line_cap ? VERDICT_FAIL : VERDICT_NONE;
    *nl = '\0';
    return strcmp(line, "DONE ok") == 0 ? VERDICT_OK : VERDICT_FAIL;
}

static int run_target(const char *token) {
    int result = 1;
    char segment[160];
    char expected[2][128];
    bool seen[2] = {false, false};
    bool unexpected = false;
    transfer_engine_t engine = NULL;
    bool registered = false;
    uint8_t *buffer = alloc_buffer(BUFFER_SIZE);
    if (buffer == NULL) goto out;

    notify_text(expected[0], sizeof expected[0], "last 1 MiB write batch complete", token);
    notify_text(expected[1], sizeof expected[1], "every byte verified", token);

    if ((engine = start_engine(segment, sizeof segment)) == NULL) goto out;
    CHECK(registerLocalMemory, engine, buffer, BUFFER_SIZE, LOCATION, 1);
    registered = true;

    /* The one line on stdout: the parent hands it to the initiator. */
    printf("READY %s 0x%" PRIxPTR "\n", segment, (uintptr_t)buffer);
    fflush(stdout);

    char line[64];
    size_t line_len = 0;
    enum verdict verdict = VERDICT_NONE;
    double verdict_at = 0;
    const double deadline = now_s() + TARGET_TIMEOUT_S;
    for (;;) {
        int count = 0;
        notify_msg_t *msgs = getNotifsFromEngine(engine, &count);
        for (int i = 0; i < count; i++) {
            bool matched = false;
            for (int k = 0; k < 2; k++) {
                if (!seen[k] && strcmp(msgs[i].name, NOTIFY_NAME) == 0 &&
                    strcmp(msgs[i].msg, expected[k]) == 0) {
                    seen[k] = matched = true;
                }
            }
            say("notification from \"%s\": \"%s\"%s", msgs[i].name, msgs[i].msg,
                matched ? "" : " (unexpected)");
            unexpected |= !matched;
        }
        if (msgs != NULL) CHECK(freeNotifsMsgBuf, msgs, count);

        if (verdict == VERDICT_NONE) {
            verdict = read_verdict(line, sizeof line, &line_len);
            verdict_at = now_s();
        }
        if (verdict == VERDICT_FAIL) {
            say("the initiator failed; stopping");
            goto out;
        }
        if (verdict == VERDICT_OK && seen[0] && seen[1]) break;
        if (verdict == VERDICT_OK && now_s() > verdict_at + NOTIFY_GRACE_S) {
            say("notifications missing %.0f s after the initiator finished: batch %s, direct %s",
                NOTIFY_GRACE_S, seen[0] ? "received" : "MISSING",
                seen[1] ? "received" : "MISSING");
            goto out;
        }
        if (now_s() > deadline) {
            say("gave up after %.0f s", TARGET_TIMEOUT_S);
            goto out;
        }
        if (verdict == VERDICT_OK) sleep_us(10000);
    }
    if (unexpected) {
        say("received unexpected notifications");
        goto out;
    }

    /* The last thing written was the 4 KiB phase's pattern. */
    size_t bad = find_pattern_mismatch(buffer, BUFFER_SIZE, PHASES[PHASE_COUNT - 1].seed);
    if (bad != BUFFER_SIZE) {
        say("byte %zu of the target buffer is 0x%02x, not the last pattern's", bad, buffer[bad]);
        goto out;
    }
    /* stdout is the parent's pipe, read only up to READY: results go to stderr. */
    say("both notifications received; %zu bytes of the target buffer verified",
        (size_t)BUFFER_SIZE);
    result = 0;

out:
    if (registered) {
        int rc = unregisterLocalMemory(engine, buffer);
        if (rc != 0) {
            report_failure("unregisterLocalMemory", rc);
            result = 1;
        }
    }
    destroyTransferEngine(engine);
    free(buffer);
    return result;
}

/* ---- parent: starts both roles and reaps them --------------------------------------------- */

/* Starts `argv` (argv[0] is this program) with stdin/stdout replaced by `in_fd`/`out_fd`
 * when they are >= 0. Returns the child's pid, or -1. */
static pid_t spawn_self(const char *self, char *const argv[], int in_fd, int out_fd) {
    pid_t pid = fork();
    if (pid < 0) {
        say("fork failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if ((in_fd >= 0 && dup2(in_fd, STDIN_FILENO) < 0) ||
            (out_fd >= 0 && dup2(out_fd, STDOUT_FILENO) < 0))
            _exit(127);
        signal(SIGPIPE, SIG_DFL); /* the parent ignores it; an ignored signal survives exec */
        /* The file /proc/self/exe names, not the link: under a tool that runs the program
         * (valgrind --trace-children=yes) readlink answers the program's path, while an exec
         * of the link itself would start the tool's own binary. */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            execv(exe, argv);
        }
        execv(self, argv);
        fprintf(stderr, "exec %s failed: %s\n", self, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Waits at most `timeout_s` for `pid`; kills it after that. Returns its exit status, or -1
 * when it timed out, was killed by a signal or could not be waited for. */
static int reap(pid_t pid, const char *name, double timeout_s) {
    double deadline = now_s() + timeout_s;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st)) return WEXITSTATUS(st);
            say("%s (pid %ld) died of signal %d", name, (long)pid, WTERMSIG(st));
            return -1;
        }
        if (r < 0 && errno != EINTR) {
            say("waitpid(%s) failed: %s", name, strerror(errno));
            return -1;
        }
        if (now_s() > deadline) {
            say("%s (pid %ld) still running after %.0f s; killing it", name, (long)pid,
                timeout_s);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        sleep_us(10000);
    }
}

/* Reads one line from `fd` within `timeout_s` into `line` (without the newline). */
static bool read_line(int fd, char *line, size_t cap, double timeout_s) {
    size_t len = 0;
    double deadline = now_s() + timeout_s;
    while (len + 1 < cap) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int wait_ms = (int)((deadline - now_s()) * 1000);
        if (wait_ms <= 0) return false;
        int r = poll(&pfd, 1, wait_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        ssize_t n = read(fd, line + len, 1); /* byte by byte: one short line, nothing more */
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        if (line[len] == '\n') {
            line[len] = '\0';
            return true;
        }
        len++;
    }
    return false;
}

static bool make_pipe(int fds[2]) {
    if (pipe(fds) != 0) {
        say("pipe failed: %s", strerror(errno));
        return false;
    }
    /* Only the child that is meant to get an end gets it (via dup2, which clears the flag). */
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return true;
}

static int run_parent(const char *self) {
    int to_target[2], from_target[2];
    char token[32];
    snprintf(token, sizeof token, "%ld", (long)getpid());

    /* A target that died early must not kill us through SIGPIPE when we write its verdict. */
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigaction(SIGPIPE, &ignore, NULL);

    if (!make_pipe(to_target)) return 1;
    if (!make_pipe(from_target)) return 1;
    char *target_argv[] = {(char *)self, (char *)"target", token, NULL};
    double started = now_s();
    pid_t target = spawn_self(self, target_argv, to_target[0], from_target[1]);
    close(to_target[0]);
    close(from_target[1]);
    if (target < 0) return 1;

    char line[256], segment[160], address[64];
    if (!read_line(from_target[0], line, sizeof line, READY_TIMEOUT_S) ||
        sscanf(line, "READY %159s %63s", segment, address) != 2) {
        say("the target did not report READY within %.0f s", READY_TIMEOUT_S);
        close(to_target[1]);
        reap(target, "target", 5);
        return 1;
    }
    say("target pid %ld is ready: segment %s, buffer %s", (long)target, segment, address);

    char *initiator_argv[] = {(char *)self, (char *)"initiator", segment, address, token, NULL};
    pid_t initiator = spawn_self(self, initiator_argv, -1, -1);
    int initiator_rc = initiator < 0 ? -1 : reap(initiator, "initiator", INITIATOR_TIMEOUT_S);

    const char *verdict = initiator_rc == 0 ? "DONE ok\n" : "DONE fail\n";
    if (write(to_target[1], verdict, strlen(verdict)) < 0)
        say("could not tell the target the verdict: %s", strerror(errno));
    close(to_target[1]);
    int target_rc = reap(target, "target", NOTIFY_GRACE_S + 30);
    close(from_target[0]);

    bool ok = initiator_rc == 0 && target_rc == 0;
    printf("transfer_example: %s (initiator exit %d, target exit %d, %.2f s in all)\n",
           ok ? "PASS" : "FAIL", initiator_rc, target_rc, now_s() - started);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (argc == 1) return run_parent(argv[0]);
    if (argc == 3 && strcmp(argv[1], "target") == 0) {
        g_role = "target";
        return run_target(argv[2]);
    }
    if (argc == 5 && strcmp(argv[1], "initiator") == 0) {
        g_role = "initiator";
        return run_initiator(argv[2], argv[3], argv[4]);
    }
    fprintf(stderr,
            "usage: %s                          run both roles and check them\n"
            "       %s target TOKEN             (started by the parent)\n"
            "       %s initiator SEGMENT ADDR TOKEN\n",
            argv[0], argv[0], argv[0]);
    return 2;
}
