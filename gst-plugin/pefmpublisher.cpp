// pefmpublish's sender: bounded queue + worker thread; file/stdout and MQTT (libmosquitto).
#include "pefmpublisher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#ifdef PEFM_HAVE_MOSQUITTO
#include <mosquitto.h>
#endif

namespace pefm {
namespace {

using Clock = std::chrono::steady_clock;

// Lines handed to libmosquitto and not yet acknowledged, at most: libmosquitto queues
// without bound, so pefm keeps the rest in its own bounded queue.
constexpr uint64_t kMaxInFlight = 20;
constexpr int kKeepAliveS = 15;
// No CONNACK this long after the connection began (no broker at the address, or a server
// that is not an MQTT broker): said, then retried like any failed connection.
constexpr int kConnackTimeoutS = 5;
constexpr int kLoopTimeoutMs = 20;

// Whether `topic` is one a client may publish to: UTF-8, no wildcards.
bool publishable_topic(const std::string& topic) {
  if (topic.find_first_of("#+") != std::string::npos) return false;
#ifdef PEFM_HAVE_MOSQUITTO
  return mosquitto_validate_utf8(topic.data(), static_cast<int>(topic.size())) == MOSQ_ERR_SUCCESS &&
         mosquitto_pub_topic_check2(topic.data(), topic.size()) == MOSQ_ERR_SUCCESS;
#else
  return true;
#endif
}

}  // namespace

bool parse_mqtt_address(const std::string& address, std::string* host, int* port, int default_port) {
  std::string h = address;
  std::string p;
  if (!h.empty() && h[0] == '[') {  // [v6]:port
    const size_t close = h.find(']');
    if (close == std::string::npos) return false;
    const std::string rest = h.substr(close + 1);
    h = h.substr(1, close - 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return false;
      p = rest.substr(1);
    }
  } else {
    const size_t colon = h.rfind(':');
    if (colon != std::string::npos) {
      if (h.find(':') != colon) return false;  // a bare IPv6 address needs brackets
      p = h.substr(colon + 1);
      h = h.substr(0, colon);
    }
  }
  if (h.empty()) return false;
  int port_value = default_port;
  if (!p.empty()) {
    if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
    port_value = std::stoi(p);
    if (port_value < 1 || port_value > 65535) return false;
  }
  *host = h;
  *port = port_value;
  return true;
}

// A stdio stream appending to `fd`, which it then owns; null (fd closed) when none can be made.
static std::FILE* stream_of(int fd) {
  std::FILE* f = ::fdopen(fd, "a");
  if (!f) ::close(fd);
  return f;
}

std::FILE* open_results_file(const std::string& location, bool append, const std::vector<std::string>& inputs,
                             std::string* replacement, std::string* target) {
  const auto fail = [&](const std::string& why) { throw std::runtime_error("location '" + location + "' " + why); };
  if (location.empty()) throw std::runtime_error("method=file needs a location");
  replacement->clear();
  *target = location;
  struct stat st {};
  if (::stat(location.c_str(), &st) != 0) {
    // A new file: created now, with the permissions the umask gives.
    const int fd = ::open(location.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) fail(std::string("cannot be created: ") + std::strerror(errno));
    return stream_of(fd);
  }
  if (S_ISDIR(st.st_mode)) fail("is a folder, not a file name");
  // A FIFO or a character device streams the lines to whatever reads it: nothing to replace.
  // Opened without waiting: a FIFO nobody reads would hold the state change forever.
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    const int fd = ::open(location.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
      fail(errno == ENXIO ? std::string("is a FIFO nobody reads; start its reader first")
                          : std::string("cannot be opened for writing: ") + std::strerror(errno));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return stream_of(fd);
  }
  if (!S_ISREG(st.st_mode)) fail("exists and is not a regular file; refusing to write to it");
  for (const auto& in : inputs) {
    struct stat other {};
    if (!in.empty() && ::stat(in.c_str(), &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino)
      fail("is '" + in + "', which this pipeline also uses; refusing to overwrite it");
  }
  // Only pefmpublish's own results are replaced or added to: JSON lines that begin with
  // its "type" field (not a model, an image, a JSON report or another tool's JSON lines).
  char head[64];
  std::FILE* probe = std::fopen(location.c_str(), "rb");
  if (!probe) fail(std::string("cannot be read: ") + std::strerror(errno));
  const size_t n = std::fread(head, 1, sizeof(head), probe);
  std::fclose(probe);
  const std::string start(head, n);
  const auto first = start.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && start.compare(first, 9, "{\"type\":\"") != 0)
    fail("exists and is not a pefmpublish results file; refusing to replace it (remove it first if that is what "
         "you want)");
  // A link is followed: its target holds the results.
  if (char* real = ::realpath(location.c_str(), nullptr)) {
    *target = real;
    std::free(real);
  }
  if (append) {
    const int fd = ::open(target->c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) fail(std::string("cannot be opened for writing: ") + std::strerror(errno));
    return stream_of(fd);
  }
  // Replaced by a new file beside it, renamed over it before the first line (so a run that
  // fails to start leaves the old results), with the old file's permissions.
  std::string tmp = *target + ".tmp-XXXXXX";
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0)
    fail(std::string("cannot be replaced (no new file beside it: ") + std::strerror(errno) +
         "); use append=true or another location");
  ::fchmod(fd, st.st_mode & 07777);
  std::FILE* f = stream_of(fd);
  if (!f) {
    ::unlink(tmp.c_str());
    return nullptr;
  }
  *replacement = tmp;
  return f;
}

bool publisher_has_mqtt() {
#ifdef PEFM_HAVE_MOSQUITTO
  return true;
#else
  return false;
#endif
}

Publisher::Publisher(PublisherOptions options, PublisherReport report)
    : options_(std::move(options)), report_(std::move(report)) {
  if (options_.max_buffered == 0) throw std::runtime_error("max-buffered must be at least 1");
  switch (options_.method) {
    case PublishMethod::kStdout:
      file_ = stdout;
      stats_.connected = true;
      worker_ = std::thread(&Publisher::run_stream, this);
      break;
    case PublishMethod::kFile:
      file_ = open_results_file(options_.location, options_.append, options_.inputs, &replacement_, &target_);
      if (!file_) throw std::runtime_error("cannot open '" + options_.location + "' for writing: " + std::strerror(errno));
      owns_file_ = true;
      stats_.connected = true;
      worker_ = std::thread(&Publisher::run_stream, this);
      break;
    case PublishMethod::kMqtt:
      if (!publisher_has_mqtt())
        throw std::runtime_error("method=mqtt: this pefm was built without libmosquitto (install libmosquitto-dev, "
                                 "then reconfigure)");
      if (options_.host.empty()) throw std::runtime_error("method=mqtt needs an address (HOST:PORT)");
      if (options_.topic.empty() || options_.topic.find_first_of("#+") != std::string::npos)
        throw std::runtime_error("topic '" + options_.topic + "' is not a topic one can publish to");
      for (const auto& [name, topic] : {std::pair<const char*, const std::string&>{"topic", options_.topic},
                                        {"topic-events", options_.topic_events},
                                        {"topic-status", options_.topic_status}}) {
        if (!topic.empty() && !publishable_topic(topic))
          throw std::runtime_error(std::string(name) + " '" + topic + "' is not a valid MQTT topic (UTF-8, no wildcards)");
      }
      if (options_.qos < 0 || options_.qos > 2) throw std::runtime_error("qos must be 0, 1 or 2");
      if (!options_.password.empty() && options_.username.empty())
        throw std::runtime_error("password-file is set but username is not: a password needs a username");
      if (options_.tls_cert.empty() != options_.tls_key.empty())
        throw std::runtime_error("tls-cert and tls-key go together: set both or neither");
      if (!options_.tls_cert.empty() && options_.tls_ca.empty())
        throw std::runtime_error("tls-cert needs tls-ca: a client certificate is sent over TLS only");
      for (const auto& [name, path] : {std::pair<const char*, const std::string&>{"tls-ca", options_.tls_ca},
                                       {"tls-cert", options_.tls_cert}, {"tls-key", options_.tls_key}}) {
        struct stat st;
        if (path.empty()) continue;
        if (::stat(path.c_str(), &st) != 0)
          throw std::runtime_error(std::string(name) + " '" + path + "': " + std::strerror(errno));
        if (!S_ISREG(st.st_mode)) throw std::runtime_error(std::string(name) + " '" + path + "' is not a file");
        if (::access(path.c_str(), R_OK) != 0)
          throw std::runtime_error(std::string(name) + " '" + path + "': " + std::strerror(errno));
      }
      start_mqtt();
      break;
  }
}

Publisher::~Publisher() {
  close();
  if (owns_file_ && file_) std::fclose(file_);
  if (!replacement_.empty()) ::unlink(replacement_.c_str());  // no line came: the old file stays
#ifdef PEFM_HAVE_MOSQUITTO
  if (mosq_) mosquitto_destroy(mosq_);
#endif
}

bool Publisher::post(std::string line, bool event) {
  bool first_drop = false;
  bool dropped = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.posted++;
    if (closing_) {
      stats_.dropped++;
      return false;
    }
    queue_.push_back({std::move(line), event});
    if (queue_.size() > options_.max_buffered) {
      // The oldest frame line goes first; events only when there is nothing else.
      auto victim = std::find_if(queue_.begin(), queue_.end(), [](const Line& l) { return !l.event; });
      queue_.erase(victim != queue_.end() ? victim : queue_.begin());
      stats_.dropped++;
      dropped = true;
      first_drop = !dropping_;
      dropping_ = true;
    }
  }
  wake_.notify_one();
  if (first_drop)
    report("dropping: more than " + std::to_string(options_.max_buffered) +
           " lines waiting (max-buffered); the oldest frame lines go first");
  return !dropped;
}

PublisherStats Publisher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  PublisherStats s = stats_;
  s.buffered = queue_.size() + in_flight_;
  return s;
}

bool Publisher::flush(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mutex_);
  return settled_.wait_for(lock, std::chrono::milliseconds(std::max(timeout_ms, 0)),
                           [this] { return queue_.empty() && in_flight_ == 0; });
}

void Publisher::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

bool Publisher::pop(Line* out) {
  // mutex_ held by the caller
  if (queue_.empty()) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  if (queue_.empty()) dropping_ = false;
  return true;
}

void Publisher::report(const std::string& what) {
  if (report_) report_(what, stats());
}

// stdout and files: write everything queued, one flush per batch.
// stdout and files: write everything queued, one flush per batch. Closing waits for the
// rest up to drain_timeout_ms, checked between batches (a write in progress is waited for).
void Publisher::run_stream() {
  std::unique_lock<std::mutex> lock(mutex_);
  Clock::time_point drain_deadline = Clock::time_point::max();
  for (;;) {
    wake_.wait(lock, [this] { return closing_ || !queue_.empty(); });
    if (closing_ && drain_deadline == Clock::time_point::max())
      drain_deadline = Clock::now() + std::chrono::milliseconds(options_.drain_timeout_ms);
    if (queue_.empty() || Clock::now() > drain_deadline) break;
    std::deque<Line> batch;
    batch.swap(queue_);
    dropping_ = false;
    in_flight_ = batch.size();
    lock.unlock();
    bool ok = true;
    if (!replacement_.empty()) {  // the first lines: the new file takes the old one's place
      ok = ::rename(replacement_.c_str(), target_.c_str()) == 0;
      if (!ok) ::unlink(replacement_.c_str());
      replacement_.clear();
    }
    std::string text;
    for (const Line& l : batch) {
      text.assign(l.text).push_back('\n');  // one write per line: nothing else lands inside it
      ok = ok && std::fwrite(text.data(), 1, text.size(), file_) == text.size();
    }
    ok = ok && std::fflush(file_) == 0;
    const std::string why = ok ? "" : std::string("write failed: ") + std::strerror(errno);
    lock.lock();
    in_flight_ = 0;
    settled_.notify_all();
    if (ok) {
      stats_.sent += batch.size();
      stats_.connected = true;
    } else {
      stats_.dropped += batch.size();
      const bool first = stats_.connected;  // reported once per run of failures
      stats_.last_error = why;
      stats_.connected = false;
      if (first) {
        lock.unlock();
        report(why);
        lock.lock();
      }
    }
  }
  stats_.dropped += queue_.size();  // left at the drain deadline
  queue_.clear();
  settled_.notify_all();
}

#ifdef PEFM_HAVE_MOSQUITTO
// libmosquitto's callbacks run inside mosquitto_loop(), on the worker thread.
struct MqttCallbacks {
  static void on_connect(struct mosquitto*, void* obj, int rc) {
    auto* self = static_cast<Publisher*>(obj);
    std::string what;
    {
      std::lock_guard<std::mutex> lock(self->mutex_);
      if (rc == 0) {
        self->stats_.connected = true;
        self->stats_.connects++;
        what = "connected to " + self->options_.host + ":" + std::to_string(self->options_.port);
        self->log_error_.clear();
      } else {
        // reported by lost() when libmosquitto then drops the connection
        self->stats_.last_error = std::string("broker refused the connection: ") + mosquitto_connack_string(rc);
        self->refused_ = true;
      }
    }
    if (!what.empty()) {
      self->publish_status("online", "");
      self->report(what);
    }
  }
  // Why a TLS handshake failed is said only here (the error code is "a TLS error").
  static void on_log(struct mosquitto*, void* obj, int level, const char* text) {
    auto* self = static_cast<Publisher*>(obj);
    if (level != MOSQ_LOG_ERR || !text) return;
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (self->log_error_.empty()) self->log_error_ = text;
  }
  // Encrypted keys are refused rather than asked for on a terminal nobody watches.
  static int no_passphrase(char*, int, int, void*) { return 0; }
  static void on_publish(struct mosquitto*, void* obj, int mid) {
    auto* self = static_cast<Publisher*>(obj);
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (self->status_mids_.erase(mid) > 0) return;  // a status message, not a line
    if (self->in_flight_ > 0) self->in_flight_--;
    self->stats_.sent++;
    self->settled_.notify_all();
  }
};

void Publisher::start_mqtt() {
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });
  mosq_ = mosquitto_new(options_.client_id.empty() ? nullptr : options_.client_id.c_str(), true, this);
  if (!mosq_) throw std::runtime_error(std::string("cannot create an MQTT client: ") + std::strerror(errno));
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_connect_callback_set(mosq_, &MqttCallbacks::on_connect);
  mosquitto_publish_callback_set(mosq_, &MqttCallbacks::on_publish);
  mosquitto_log_callback_set(mosq_, &MqttCallbacks::on_log);
  const auto opt = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
  if (!options_.tls_ca.empty()) {
    const int rc = mosquitto_tls_set(mosq_, options_.tls_ca.c_str(), nullptr, opt(options_.tls_cert),
                                     opt(options_.tls_key), &MqttCallbacks::no_passphrase);
    if (rc != MOSQ_ERR_SUCCESS)
      throw std::runtime_error("tls-ca '" + options_.tls_ca + "', tls-cert, tls-key: " + mosquitto_strerror(rc));
  }
  if (!options_.username.empty()) {
    const int rc = mosquitto_username_pw_set(mosq_, options_.username.c_str(), opt(options_.password));
    if (rc != MOSQ_ERR_SUCCESS) throw std::runtime_error("username: " + std::string(mosquitto_strerror(rc)));
  }
  worker_ = std::thread(&Publisher::run_mqtt, this);
}

// A retained status message (QoS 1, not counted as a line). From the worker thread.
void Publisher::publish_status(const std::string& status, const std::string& reason) {
  if (options_.topic_status.empty() || !options_.status_line) return;
  const std::string text = options_.status_line(status, reason);
  int mid = 0;
  // Not under mutex_ (libmosquitto may log, and on_log takes it). Its acknowledgement
  // comes from mosquitto_loop, on this same thread, after the mid is filed.
  if (mosquitto_publish(mosq_, &mid, options_.topic_status.c_str(), static_cast<int>(text.size()), text.data(), 1,
                        true) != MOSQ_ERR_SUCCESS)
    return;
  std::lock_guard<std::mutex> lock(mutex_);
  status_mids_.insert(mid);
}

void Publisher::run_mqtt() {
  struct mosquitto* mosq = mosq_;

  bool socket_open = false;
  bool tried = false;
  int backoff_ms = options_.backoff_min_ms;
  Clock::time_point next_try = Clock::now();
  Clock::time_point drain_deadline = Clock::time_point::max();

  Clock::time_point connected_since = Clock::time_point::max();
  Clock::time_point socket_since = Clock::time_point::max();  // connecting began, no CONNACK yet
  auto lost = [&](std::string why) {
    socket_open = false;
    bool was_connected;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      was_connected = stats_.connected;
      stats_.connected = false;
      if (refused_) why = stats_.last_error;  // the broker's own reason, from on_connect
      refused_ = false;
      if (!log_error_.empty()) why += " (" + log_error_ + ")";
      log_error_.clear();
      // status_mids_ stays: libmosquitto resends an unacknowledged status after
      // reconnecting, and its acknowledgement must not count as a line's
      stats_.last_error = why;
      if (options_.qos == 0) {  // QoS 0 is not resent: what was handed over is gone
        stats_.dropped += in_flight_;
        in_flight_ = 0;
        settled_.notify_all();
      }
    }
    report((was_connected ? "disconnected: " : "connection failed: ") + why + "; retrying in " +
           std::to_string(backoff_ms) + " ms");
    next_try = Clock::now() + std::chrono::milliseconds(backoff_ms);
    backoff_ms = std::min(backoff_ms * 2, options_.backoff_max_ms);
  };

  for (;;) {
    bool connected;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (closing_ && drain_deadline == Clock::time_point::max())
        drain_deadline = Clock::now() + std::chrono::milliseconds(options_.drain_timeout_ms);
      const bool idle = queue_.empty() && in_flight_ == 0;
      if (closing_ && (idle || Clock::now() >= drain_deadline)) break;
      if (!socket_open && Clock::now() < next_try) {
        wake_.wait_until(lock, std::min(next_try, drain_deadline));
        continue;
      }
      connected = stats_.connected;
    }
    if (!socket_open) {
      // The broker publishes the will when this connection ends without a goodbye (the
      // process killed, the network gone): "offline" stays retained for the MES to see.
      if (!options_.topic_status.empty() && options_.status_line) {
        const std::string will = options_.status_line("offline", "connection lost");
        mosquitto_will_set(mosq, options_.topic_status.c_str(), static_cast<int>(will.size()), will.data(), 1, true);
      }
      const int rc = tried ? mosquitto_reconnect_async(mosq)
                           : mosquitto_connect_async(mosq, options_.host.c_str(), options_.port, kKeepAliveS);
      tried = true;
      if (rc != MOSQ_ERR_SUCCESS) {
        lost(rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc));
        continue;
      }
      socket_open = true;
      socket_since = Clock::now();
    }
    if (connected) {
      std::unique_lock<std::mutex> lock(mutex_);
      Line line;
      while (in_flight_ < kMaxInFlight && pop(&line)) {
        in_flight_++;
        lock.unlock();
        const std::string& topic = line.event && !options_.topic_events.empty() ? options_.topic_events : options_.topic;
        const int rc = mosquitto_publish(mosq, nullptr, topic.c_str(), static_cast<int>(line.text.size()),
                                         line.text.data(), options_.qos, false);
        lock.lock();
        // QoS 0 goes straight to the socket, so "not connected" means libmosquitto kept
        // nothing; QoS 1 and 2 messages are filed before sending, and resent from there.
        if (rc == MOSQ_ERR_NO_CONN && options_.qos == 0) {
          in_flight_--;
          queue_.push_front(std::move(line));
          break;
        }
        if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_NOMEM || rc == MOSQ_ERR_PAYLOAD_SIZE ||
            rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_QOS_NOT_SUPPORTED || rc == MOSQ_ERR_OVERSIZE_PACKET) {
          // refused before libmosquitto took it, and it would be refused again
          in_flight_--;
          stats_.dropped++;
          settled_.notify_all();
          stats_.last_error = std::string("a line was refused: ") + mosquitto_strerror(rc);
          break;
        }
        // Any other result (a write error on a dying connection): libmosquitto holds the
        // message (QoS 1, 2: resent after reconnecting; QoS 0: lost, counted by lost()).
      }
    }
    const int rc = mosquitto_loop(mosq, kLoopTimeoutMs, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      connected_since = Clock::time_point::max();
      lost(rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc));
    } else if (!stats().connected && Clock::now() - socket_since > std::chrono::seconds(kConnackTimeoutS)) {
      mosquitto_disconnect(mosq);
      lost("no MQTT answer from " + options_.host + ":" + std::to_string(options_.port) + " within " +
           std::to_string(kConnackTimeoutS) + " s (no broker there, or not an MQTT one)");
    } else if (stats().connected) {
      // The backoff starts again only after a connection that lasted: a broker that
      // accepts and then drops the client (a duplicate client id) is not retried at once.
      const auto now = Clock::now();
      if (connected_since == Clock::time_point::max()) connected_since = now;
      if (now - connected_since > std::chrono::seconds(10)) backoff_ms = options_.backoff_min_ms;
    }
  }
  if (socket_open) {
    // A clean goodbye: the broker drops the will, so "offline" is said here, and waited
    // for (briefly) before disconnecting.
    if (stats().connected) {
      publish_status("offline", "stopped");
      const auto until = Clock::now() + std::chrono::milliseconds(1000);
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (status_mids_.empty()) break;
        }
        if (Clock::now() > until || mosquitto_loop(mosq, kLoopTimeoutMs, 1) != MOSQ_ERR_SUCCESS) break;
      }
    }
    mosquitto_disconnect(mosq);
    mosquitto_loop(mosq, kLoopTimeoutMs, 1);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.dropped += queue_.size() + in_flight_;
  queue_.clear();
  in_flight_ = 0;
  stats_.connected = false;
  settled_.notify_all();
}
#else
void Publisher::start_mqtt() {}
void Publisher::run_mqtt() {}
void Publisher::publish_status(const std::string&, const std::string&) {}
#endif

}  // namespace pefm
