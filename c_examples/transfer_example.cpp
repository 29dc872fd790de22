// SPDX-License-Identifier: Apache-2.0
//
// transfer_example.cpp: the C++17 twin of transfer_example.c, with RAII owners for every
// handle the Transfer Engine C API of libmooncake hands out.
//
// Run it with no argument. It starts two copies of itself on 127.0.0.1:
//   target     registers a 256 MiB buffer, prints "READY <segment name> <buffer address>" on
//              its stdout (a pipe to the parent), waits for two notifications and for the
//              parent's verdict ("DONE ok" / "DONE fail") on stdin, then checks its buffer.
//   initiator  opens the target's segment, writes 256 MiB into it and reads it back, first in
//              1 MiB requests and then in 4 KiB requests (another byte pattern), and compares
//              every byte; one batch goes out with submitTransferWithNotify and one message
//              with genNotifyInEngine. Unlike the C example, its two buffers are registered
//              with registerLocalMemoryBatch.
// The exit status is 0 only if both children succeeded. Failures of library calls throw
// `mooncake_error`, which names the function, its return code and mooncake_last_error().

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "transfer_engine_c.h"
#include "mooncake.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kBufferSize = 256 * kMiB;
constexpr const char *kLocation = "cpu:0";
constexpr const char *kNotifyName = "transfer_example.initiator";

// Every wait is bounded; these are the bounds.
constexpr auto kBatchTimeout = 60s;      // one batch, from submit to its last task's end
constexpr auto kReadyTimeout = 30s;      // target start-up, until it prints READY
constexpr auto kInitiatorTimeout = 240s;
constexpr auto kTargetTimeout = 270s;    // whole life of the target
constexpr auto kNotifyGrace = 10s;       // after the initiator is done, for notifications

// One pass over the whole buffer: write it all, read it all back, compare.
struct Phase {
    const char *label;
    std::size_t request_size;
    std::size_t requests_per_batch;
    std::uint64_t seed;  // of the byte pattern
};
constexpr std::array<Phase, 2> kPhases{{
    {"1 MiB", 1 * kMiB, 64, 0x4d6f6f6e63616b65u},
    {"4 KiB", 4096, 4096, 0x0123456789abcdefu},
}};

const char *g_role = "main";

template <typename... Args>
void say(const char *fmt, Args... args) {
    std::fprintf(stderr, "[%s] ", g_role);
    if constexpr (sizeof...(Args) == 0) {
        std::fputs(fmt, stderr);
    } else {
        std::fprintf(stderr, fmt, args...);
    }
    std::fputc('\n', stderr);
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A failed library call: which function, what it returned, and the library's own account.
class mooncake_error : public std::runtime_error {
public:
    mooncake_error(const std::string &function, long long code)
        : mooncake_error(function, "code " + std::to_string(code)) {}
    // For the calls that return a handle or an id instead of a code.
    mooncake_error(const std::string &function, const std::string &result)
        : std::runtime_error(function + " failed: " + result + ": " + mooncake_last_error()) {}
};

void check(const char *function, int rc) {
    if (rc != 0) throw mooncake_error(function, rc);
}

// Logs instead of throwing: for destructors, which must not throw.
void check_quietly(const char *function, int rc) noexcept {
    if (rc != 0) say("%s failed: code %d: %s", function, rc, mooncake_last_error());
}

const char *status_name(int status) {
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

// ---- byte patterns --------------------------------------------------------------------------

// splitmix64's finaliser over the word index: a request landing at the wrong offset shows up,
// not only a wrong byte.
std::uint64_t pattern_word(std::uint64_t seed, std::size_t word) {
    std::uint64_t x = seed + static_cast<std::uint64_t>(word) * 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

void fill_pattern(std::vector<std::uint8_t> &buf, std::uint64_t seed) {
    for (std::size_t w = 0; w < buf.size() / 8; ++w) {
        const std::uint64_t v = pattern_word(seed, w);
        std::memcpy(buf.data() + 8 * w, &v, 8);
    }
}

// Offset of the first byte that differs from the pattern, if any.
std::optional<std::size_t> pattern_mismatch(const std::uint8_t *buf, std::size_t len,
                                            std::uint64_t seed) {
    for (std::size_t w = 0; w < len / 8; ++w) {
        const std::uint64_t want = pattern_word(seed, w);
        if (std::memcmp(buf + 8 * w, &want, 8) != 0) {
            const auto *want_bytes = reinterpret_cast<const std::uint8_t *>(&want);
            for (std::size_t i = 0; i < 8; ++i)
                if (buf[8 * w + i] != want_bytes[i]) return 8 * w + i;
        }
    }
    return std::nullopt;
}

std::string notify_text(const char *what, const std::string &token) {
    return std::string(what) + " token=" + token;
}

// ---- RAII owners of library handles ---------------------------------------------------------

// An engine on 127.0.0.1. The metadata string comes from MOONCAKE_METADATA (default
// "P2PHANDSHAKE"): then the segment name is "127.0.0.1:<handshake port>"; with a metadata server
// ("http://...", "etcd://...", "redis://...") it is the name the engine was created with.
class Engine {
public:
    Engine() : metadata_(metadata_string()), handle_(create(metadata_)) {
        char ip_port[128];
        const int rc = getLocalIpAndPort(handle_, ip_port, sizeof ip_port);
        if (rc != 0) {
            destroyTransferEngine(handle_);
            throw mooncake_error("getLocalIpAndPort", rc);
        }
        const std::string text(ip_port);
        const auto colon = text.rfind(':');
        if (colon == std::string::npos || colon + 1 == text.size()) {
            destroyTransferEngine(handle_);
            throw std::runtime_error("getLocalIpAndPort wrote \"" + text + "\", not ip:port");
        }
        segment_ = metadata_ == "P2PHANDSHAKE" ? "127.0.0.1:" + text.substr(colon + 1) : name_for(metadata_);
        say("engine up (%s): getLocalIpAndPort says \"%s\", segment \"%s\"", metadata_.c_str(), ip_port,
            segment_.c_str());
    }
    ~Engine() { destroyTransferEngine(handle_); }
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    transfer_engine_t get() const { return handle_; }
    const std::string &segment() const { return segment_; }

private:
    static std::string metadata_string() {
        const char *m = std::getenv("MOONCAKE_METADATA");
        return (m == nullptr || *m == '\0') ? "P2PHANDSHAKE" : m;
    }
    static std::string name_for(const std::string &metadata) {
        return metadata == "P2PHANDSHAKE" ? "127.0.0.1" : "cpp-example-" + std::to_string(getpid());
    }
    static transfer_engine_t create(const std::string &metadata) {
        const std::string name = name_for(metadata);
        transfer_engine_t h = createTransferEngine(metadata.c_str(), name.c_str(), nullptr, 0, 1);
        if (h == nullptr) throw mooncake_error("createTransferEngine", "returned NULL");
        return h;
    }

    std::string metadata_;
    transfer_engine_t handle_;
    std::string segment_;
};

// One registered region (registerLocalMemory / unregisterLocalMemory).
class Registration {
public:
    Registration(const Engine &engine, std::vector<std::uint8_t> &buf, bool remote_accessible)
        : engine_(engine.get()), addr_(buf.data()) {
        check("registerLocalMemory", registerLocalMemory(engine_, addr_, buf.size(), kLocation,
                                                         remote_accessible ? 1 : 0));
    }
    ~Registration() { check_quietly("unregisterLocalMemory", unregisterLocalMemory(engine_, addr_)); }
    Registration(const Registration &) = delete;
    Registration &operator=(const Registration &) = delete;

private:
    transfer_engine_t engine_;
    void *addr_;
};

// Several regions registered at once (registerLocalMemoryBatch / unregisterLocalMemoryBatch).
class BatchRegistration {
public:
    BatchRegistration(const Engine &engine, std::vector<std::vector<std::uint8_t> *> bufs)
        : engine_(engine.get()) {
        std::vector<buffer_entry_t> entries;
        for (auto *buf : bufs) {
            entries.push_back(buffer_entry_t{buf->data(), buf->size()});
            addrs_.push_back(buf->data());
        }
        check("registerLocalMemoryBatch",
              registerLocalMemoryBatch(engine_, entries.data(), entries.size(), kLocation));
    }
    ~BatchRegistration() {
        check_quietly("unregisterLocalMemoryBatch",
                      unregisterLocalMemoryBatch(engine_, addrs_.data(), addrs_.size()));
    }
    BatchRegistration(const BatchRegistration &) = delete;
    BatchRegistration &operator=(const BatchRegistration &) = delete;

private:
    transfer_engine_t engine_;
    std::vector<void *> addrs_;
};

// An open segment; closed (and checked) by close(), or quietly on unwinding.
class Segment {
public:
    Segment(const Engine &engine, const std::string &name)
        : engine_(engine.get()), id_(openSegment(engine_, name.c_str())) {
        if (id_ < 0) throw mooncake_error("openSegment", id_);
    }
    ~Segment() {
        if (open_) check_quietly("closeSegment", closeSegment(engine_, id_));
    }
    Segment(const Segment &) = delete;
    Segment &operator=(const Segment &) = delete;

    segment_id_t id() const { return id_; }
    void close() {
        open_ = false;
        check("closeSegment", closeSegment(engine_, id_));
    }

private:
    transfer_engine_t engine_;
    segment_id_t id_;
    bool open_ = true;
};

// A batch: allocate, submit, wait for every task; release() frees it and checks the result,
// the destructor frees it quietly on the error path.
class Batch {
public:
    Batch(const Engine &engine, std::size_t capacity)
        : engine_(engine.get()), id_(allocateBatchID(engine_, capacity)) {
        if (id_ == INVALID_BATCH) throw mooncake_error("allocateBatchID", "returned INVALID_BATCH");
    }
    ~Batch() {
        if (id_ != INVALID_BATCH) check_quietly("freeBatchID", freeBatchID(engine_, id_));
    }
    Batch(const Batch &) = delete;
    Batch &operator=(const Batch &) = delete;

    void submit(std::vector<transfer_request_t> &requests, const notify_msg_t *notify) {
        if (notify != nullptr) {
            check("submitTransferWithNotify",
                  submitTransferWithNotify(engine_, id_, requests.data(), requests.size(), *notify));
        } else {
            check("submitTransfer", submitTransfer(engine_, id_, requests.data(), requests.size()));
        }
    }

    // Polls task after task until each has ended; throws unless all completed in full.
    // After a failed task it keeps polling the rest, so that the batch can still be freed.
    void wait(const std::vector<transfer_request_t> &requests) const {
        const auto deadline = Clock::now() + kBatchTimeout;
        std::string failure;
        for (std::size_t task = 0; task < requests.size();) {
            transfer_status_t st{};
            check("getTransferStatus", getTransferStatus(engine_, id_, task, &st));
            if (st.status == STATUS_WAITING || st.status == STATUS_PENDING) {
                if (Clock::now() > deadline) {
                    throw std::runtime_error("task " + std::to_string(task) + " still " +
                                             status_name(st.status) + " after " +
                                             std::to_string(kBatchTimeout.count()) + " s");
                }
                std::this_thread::sleep_for(20us);
                continue;
            }
            if (failure.empty() && st.status != STATUS_COMPLETED) {
                // It failed on a library thread: this thread's mooncake_last_error() does not
                // describe it (the library logs it).
                failure = "task " + std::to_string(task) + " ended " + status_name(st.status) +
                          " after " + std::to_string(st.transferred_bytes) + " bytes";
            } else if (failure.empty() && st.transferred_bytes != requests[task].length) {
                failure = "task " + std::to_string(task) + " completed with transferred_bytes " +
                          std::to_string(st.transferred_bytes) + ", expected " +
                          std::to_string(requests[task].length);
            }
            ++task;
        }
        if (!failure.empty()) throw std::runtime_error(failure);
    }

    void release() {
        const batch_id_t id = std::exchange(id_, INVALID_BATCH);
        check("freeBatchID", freeBatchID(engine_, id));
    }

private:
    transfer_engine_t engine_;
    batch_id_t id_;
};

// The notifications one getNotifsFromEngine call drained; freed with freeNotifsMsgBuf.
class Notifications {
public:
    explicit Notifications(const Engine &engine) : msgs_(getNotifsFromEngine(engine.get(), &count_)) {
        if (msgs_ == nullptr) count_ = 0;
    }
    ~Notifications() {
        if (msgs_ != nullptr) check_quietly("freeNotifsMsgBuf", freeNotifsMsgBuf(msgs_, count_));
    }
    Notifications(const Notifications &) = delete;
    Notifications &operator=(const Notifications &) = delete;

    const notify_msg_t *begin() const { return msgs_; }
    const notify_msg_t *end() const { return msgs_ + count_; }
    void release() {
        notify_msg_t *msgs = std::exchange(msgs_, nullptr);
        if (msgs != nullptr) check("freeNotifsMsgBuf", freeNotifsMsgBuf(msgs, count_));
    }

private:
    int count_ = 0;  // declared first: the constructor's call writes it
    notify_msg_t *msgs_;
};

// ---- initiator ------------------------------------------------------------------------------

// Moves the whole buffer between `local` and the target's buffer in `phase.request_size`
// requests; the last batch carries `notify` when it is non-null.
void transfer_buffer(const Engine &engine, int opcode, std::vector<std::uint8_t> &local,
                     segment_id_t segment, std::uint64_t remote_addr, const Phase &phase,
                     const notify_msg_t *notify) {
    const std::size_t batch_bytes = phase.request_size * phase.requests_per_batch;
    std::vector<transfer_request_t> requests;
    for (std::size_t off = 0; off < local.size(); off += batch_bytes) {
        requests.clear();
        for (std::size_t at = off; at < local.size() && at < off + batch_bytes;
             at += phase.request_size) {
            requests.push_back(transfer_request_t{opcode, local.data() + at, segment,
                                                  remote_addr + at, phase.request_size});
        }
        const bool last = off + batch_bytes >= local.size();
        try {
            Batch batch(engine, requests.size());
            batch.submit(requests, last ? notify : nullptr);
            batch.wait(requests);
            batch.release();
        } catch (const std::exception &e) {
            throw std::runtime_error(std::string(phase.label) +
                                     (opcode == OPCODE_WRITE ? " write" : " read") +
                                     " batch at offset " + std::to_string(off) + ": " + e.what());
        }
    }
}

void run_initiator(const std::string &target_segment, const std::string &address_text,
                   const std::string &token) {
    char *end = nullptr;
    errno = 0;
    const std::uint64_t remote_addr = std::strtoull(address_text.c_str(), &end, 0);
    if (errno != 0 || end == address_text.c_str() || *end != '\0' || remote_addr == 0)
        throw std::runtime_error("bad target address \"" + address_text + "\"");

    std::vector<std::uint8_t> source(kBufferSize), readback(kBufferSize);
    Engine engine;
    // Locals die in reverse order: segment, registrations, engine, then the buffers.
    BatchRegistration registration(engine, {&source, &readback});
    Segment target(engine, target_segment);
    say("opened segment \"%s\" as id %d; remote buffer at 0x%" PRIx64, target_segment.c_str(),
        static_cast<int>(target.id()), remote_addr);

    std::string batch_text = notify_text("last 1 MiB write batch complete", token);
    std::string direct_text = notify_text("every byte verified", token);
    std::string name = kNotifyName;
    const notify_msg_t batch_notify{name.data(), batch_text.data()};
    const notify_msg_t direct_notify{name.data(), direct_text.data()};

    std::size_t verified = 0;
    Clock::duration moving{};
    const auto started = Clock::now();
    for (std::size_t p = 0; p < kPhases.size(); ++p) {
        const Phase &phase = kPhases[p];
        fill_pattern(source, phase.seed);
        std::fill(readback.begin(), readback.end(), 0);

        const auto t0 = Clock::now();
        transfer_buffer(engine, OPCODE_WRITE, source, target.id(), remote_addr, phase,
                        p == 0 ? &batch_notify : nullptr);
        const auto t1 = Clock::now();
        transfer_buffer(engine, OPCODE_READ, readback, target.id(), remote_addr, phase, nullptr);
        const auto t2 = Clock::now();

        if (source != readback) {
            const auto bad = std::mismatch(source.begin(), source.end(), readback.begin());
            std::ostringstream what;
            what << phase.label << " phase: byte " << (bad.first - source.begin())
                 << " read back as " << unsigned{*bad.second} << ", wrote " << unsigned{*bad.first};
            throw std::runtime_error(what.str());
        }
        verified += kBufferSize;
        moving += t2 - t0;
        say("%s requests (%zu per batch): write %.3f s (%.2f GB/s), read %.3f s (%.2f GB/s), "
            "%zu bytes verified",
            phase.label, phase.requests_per_batch, seconds(t1 - t0),
            kBufferSize / seconds(t1 - t0) / 1e9, seconds(t2 - t1),
            kBufferSize / seconds(t2 - t1) / 1e9, kBufferSize);
    }

    check("genNotifyInEngine",
          genNotifyInEngine(engine.get(), static_cast<std::uint64_t>(target.id()), direct_notify));
    target.close();
    std::printf("initiator: %zu bytes verified; %.2f GB moved in %.2f s of transfers "
                "(%.2f GB/s); %.2f s in all\n",
                verified, 2.0 * verified / 1e9, seconds(moving),
                2.0 * verified / seconds(moving) / 1e9, seconds(Clock::now() - started));
}

// ---- target ---------------------------------------------------------------------------------

// The parent's verdict on the initiator, one line on stdin: "DONE ok" or anything else.
class VerdictReader {
public:
    // Waits up to 20 ms for input; returns the verdict once a whole line (or EOF) arrived.
    std::optional<bool> poll_once() {
        pollfd pfd{STDIN_FILENO, POLLIN, 0};
        if (::poll(&pfd, 1, 20) <= 0) return std::nullopt;
        char chunk[64];
        const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (n < 0) return errno == EINTR ? std::nullopt : std::optional<bool>(false);
        if (n == 0) {
            say("stdin closed without a verdict");
            return false;
        }
        line_.append(chunk, static_cast<std::size_t>(n));
        const auto nl = line_.find('\n');
        if (nl == std::string::npos) return std::nullopt;
        return line_.compare(0, nl, "DONE ok") == 0;
    }

private:
    std::string line_;
};

void run_target(const std::string &token) {
    std::vector<std::uint8_t> buffer(kBufferSize);
    Engine engine;
    Registration registration(engine, buffer, /*remote_accessible=*/true);

    // The one line on stdout: the parent hands it to the initiator.
    std::printf("READY %s 0x%" PRIxPTR "\n", engine.segment().c_str(),
                reinterpret_cast<std::uintptr_t>(buffer.data()));
    std::fflush(stdout);

    struct Expected {
        std::string msg;
        bool seen;
    };
    std::array<Expected, 2> expected{{
        {notify_text("last 1 MiB write batch complete", token), false},
        {notify_text("every byte verified", token), false},
    }};
    bool unexpected = false;
    const auto all_seen = [&] { return expected[0].seen && expected[1].seen; };

    VerdictReader reader;
    std::optional<bool> verdict;
    Clock::time_point verdict_at{};
    const auto deadline = Clock::now() + kTargetTimeout;
    for (;;) {
        Notifications notes(engine);
        for (const notify_msg_t &m : notes) {
            bool matched = false;
            for (auto &e : expected) {
                if (!e.seen && kNotifyName == std::string(m.name) && e.msg == m.msg)
                    e.seen = matched = true;
            }
            say("notification from \"%s\": \"%s\"%s", m.name, m.msg, matched ? "" : " (unexpected)");
            unexpected |= !matched;
        }
        notes.release();

        if (!verdict) {
            verdict = reader.poll_once();
            verdict_at = Clock::now();
        }
        if (verdict && !*verdict) throw std::runtime_error("the initiator failed; stopping");
        if (verdict && all_seen()) break;
        if (verdict && Clock::now() > verdict_at + kNotifyGrace) {
            throw std::runtime_error(std::string("notifications missing after the initiator "
                                                 "finished: batch ") +
                                     (expected[0].seen ? "received" : "MISSING") + ", direct " +
                                     (expected[1].seen ? "received" : "MISSING"));
        }
        if (Clock::now() > deadline) throw std::runtime_error("gave up waiting");
        if (verdict) std::this_thread::sleep_for(10ms);
    }
    if (unexpected) throw std::runtime_error("received unexpected notifications");

    // The last thing written was the 4 KiB phase's pattern.
    if (auto bad = pattern_mismatch(buffer.data(), buffer.size(), kPhases.back().seed)) {
        throw std::runtime_error("byte " + std::to_string(*bad) +
                                 " of the target buffer is not the last pattern's");
    }
    // stdout is the parent's pipe, read only up to READY: results go to stderr.
    say("both notifications received; %zu bytes of the target buffer verified", buffer.size());
}

// ---- parent: starts both roles and reaps them -----------------------------------------------

// An owned file descriptor.
class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd &operator=(Fd &&other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    }

private:
    int fd_;
};

// A pipe whose ends are close-on-exec: a child gets an end only through dup2.
std::pair<Fd, Fd> make_pipe() {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    ::fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return {Fd(fds[0]), Fd(fds[1])};
}

// A copy of this program in another role; killed and reaped if still running when destroyed.
class Child {
public:
    Child(const char *name, const std::string &self, std::vector<std::string> args,
          int stdin_fd = -1, int stdout_fd = -1)
        : name_(name) {
        args.insert(args.begin(), self);
        std::vector<char *> argv;
        for (auto &a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        if (pid_ == 0) {
            if ((stdin_fd >= 0 && ::dup2(stdin_fd, STDIN_FILENO) < 0) ||
                (stdout_fd >= 0 && ::dup2(stdout_fd, STDOUT_FILENO) < 0))
                ::_exit(127);
            ::signal(SIGPIPE, SIG_DFL);  // the parent ignores it; an ignored signal survives exec
            // The file /proc/self/exe names, not the link: under a tool that runs the program
            // (valgrind --trace-children=yes) readlink answers the program's path, while an
            // exec of the link itself would start the tool's own binary.
            char exe[4096];
            ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (n > 0) {
                exe[n] = '\0';
                ::execv(exe, argv.data());
            }
            ::execv(self.c_str(), argv.data());
            ::_exit(127);
        }
    }
    ~Child() {
        if (pid_ > 0) wait_for(0s);
    }
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;

    pid_t pid() const { return pid_; }

    // Waits at most `timeout`, then kills; the exit status, or -1 (timeout, signal, error).
    int wait_for(Clock::duration timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                if (WIFEXITED(st)) return WEXITSTATUS(st);
                say("%s died of signal %d", name_, WTERMSIG(st));
                return -1;
            }
            if (r < 0 && errno != EINTR) {
                say("waitpid(%s): %s", name_, std::strerror(errno));
                pid_ = -1;
                return -1;
            }
            if (Clock::now() >= deadline) {
                say("%s (pid %ld) still running; killing it", name_, static_cast<long>(pid_));
                ::kill(pid_, SIGKILL);
                while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
                }
                pid_ = -1;
                return -1;
            }
            std::this_thread::sleep_for(10ms);
        }
    }

private:
    const char *name_;
    pid_t pid_ = -1;
};

// One line from `fd` within `timeout` (without the newline).
std::optional<std::string> read_line(int fd, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string line;
    while (line.size() < 512) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return std::nullopt;
        pollfd pfd{fd, POLLIN, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return std::nullopt;
        char c;
        const ssize_t n = ::read(fd, &c, 1);  // byte by byte: one short line, nothing more
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        if (c == '\n') return line;
        line.push_back(c);
    }
    return std::nullopt;
}

int run_parent(const std::string &self) {
    // A target that died early must not kill us through SIGPIPE when we write its verdict.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);

    const std::string token = std::to_string(::getpid());
    const auto started = Clock::now();
    auto [target_in_read, target_in] = make_pipe();
    auto [target_out, target_out_write] = make_pipe();
    Child target("target", self, {"target", token}, target_in_read.get(), target_out_write.get());
    target_in_read.reset();
    target_out_write.reset();

    const auto ready = read_line(target_out.get(), kReadyTimeout);
    std::istringstream fields(ready.value_or(""));
    std::string word, segment, address;
    if (!(fields >> word >> segment >> address) || word != "READY") {
        say("the target did not report READY within %lld s",
            static_cast<long long>(kReadyTimeout.count()));
        target_in.reset();
        target.wait_for(5s);
        return 1;
    }
    say("target pid %ld is ready: segment %s, buffer %s", static_cast<long>(target.pid()),
        segment.c_str(), address.c_str());

    int initiator_rc = -1;
    {
        Child initiator("initiator", self, {"initiator", segment, address, token});
        initiator_rc = initiator.wait_for(kInitiatorTimeout);
    }

    const std::string verdict = initiator_rc == 0 ? "DONE ok\n" : "DONE fail\n";
    if (::write(target_in.get(), verdict.data(), verdict.size()) < 0)
        say("could not tell the target the verdict: %s", std::strerror(errno));
    target_in.reset();
    const int target_rc = target.wait_for(kNotifyGrace + 30s);

    const bool ok = initiator_rc == 0 && target_rc == 0;
    std::printf("transfer_example (C++): %s (initiator exit %d, target exit %d, %.2f s in all)\n",
                ok ? "PASS" : "FAIL", initiator_rc, target_rc, seconds(Clock::now() - started));
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    std::setvbuf(stderr, nullptr, _IOLBF, 0);
    const std::vector<std::string> args(argv, argv + argc);
    try {
        if (args.size() == 1) return run_parent(args[0]);
        if (args.size() == 3 && args[1] == "target") {
            g_role = "target";
            run_target(args[2]);
            return 0;
        }
        if (args.size() == 5 && args[1] == "initiator") {
            g_role = "initiator";
            run_initiator(args[2], args[3], args[4]);
            return 0;
        }
    } catch (const std::exception &e) {
        say("%s", e.what());
        return 1;
    }
    std::fprintf(stderr,
                 "usage: %s                          run both roles and check them\n"
                 "       %s target TOKEN             (started by the parent)\n"
                 "       %s initiator SEGMENT ADDR TOKEN\n",
                 argv[0], argv[0], argv[0]);
    return 2;
}
