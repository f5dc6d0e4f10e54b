// The sending side of pefmpublish: a bounded queue of JSON lines and one worker thread
// that writes them to stdout, a file or an MQTT broker (libmosquitto). post() never waits
// on the destination: a full queue drops its oldest frame line (events are kept first)
// and counts it; a broker that is down or refuses is retried with exponential backoff.
// No GStreamer: the element (gstpefmpublish.cpp) owns one Publisher per run.
#ifndef PEFM_GST_PUBLISHER_H
#define PEFM_GST_PUBLISHER_H

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

struct mosquitto;

namespace pefm {

enum class PublishMethod { kStdout, kFile, kMqtt };

struct PublisherOptions {
  PublishMethod method = PublishMethod::kStdout;
  std::string location;             // kFile: the file (open_results_file's rules)
  bool append = false;              // kFile: add to an existing results file, else replace it
  std::vector<std::string> inputs;  // kFile: files the pipeline reads or writes otherwise: refused
  std::string host = "localhost";   // kMqtt
  int port = 1883;
  std::string topic = "pefm/results";
  std::string topic_events;         // kMqtt: where event lines go; empty: `topic`
  std::string topic_status;         // kMqtt: the retained online/offline status; empty: none
  int qos = 1;
  std::string client_id;            // kMqtt; empty: the broker assigns one
  std::string tls_ca;               // kMqtt: CA file; set: TLS, the broker's certificate and name checked
  std::string tls_cert, tls_key;    // kMqtt: this client's certificate and key (unencrypted), both or neither
  std::string username, password;   // kMqtt: the login; a password needs a username
  // kMqtt: the JSON of a status line ("online", or "offline" with a reason), made when it
  // is sent: the last will before each connection, online on each, offline at close().
  std::function<std::string(const std::string& status, const std::string& reason)> status_line;
  size_t max_buffered = 1000;       // lines waiting to be sent, at most
  int drain_timeout_ms = 3000;      // close(): how long queued lines may still be sent
  int backoff_min_ms = 250;         // first retry after a failed connection, doubling ...
  int backoff_max_ms = 8000;        // ... up to this
};

struct PublisherStats {
  uint64_t posted = 0;       // lines given to post()
  uint64_t sent = 0;         // written (file, stdout) or acknowledged by the broker (QoS 1, 2)
  uint64_t dropped = 0;      // lost: queue full, write error, or still queued at close()
  uint64_t buffered = 0;     // waiting now (including lines handed to libmosquitto, unacknowledged)
  uint64_t connects = 0;     // successful broker connections
  bool connected = false;    // kMqtt: connected now; else: the destination is open
  std::string last_error;    // the latest failure, empty if none
};

// What the worker reports as it happens (from its own thread): a change of connection
// ("connected", "disconnected: <why>", "connection failed: <why>") or the first of a run of
// drops ("dropping: <why>").
using PublisherReport = std::function<void(const std::string& what, const PublisherStats& stats)>;

// "HOST:PORT", "HOST" (port `default_port`) or "[v6addr]:PORT" -> host, port; false if malformed.
bool parse_mqtt_address(const std::string& address, std::string* host, int* port, int default_port = 1883);

// Opens method=file's results file as the tools treat their outputs: never a folder, one of
// `inputs` (the same file, however named) or an existing file that is not pefmpublish's
// JSON lines (a model, an image, a report). A new file is created; an existing results
// file (a link's target) is added to with `append`, else replaced: the returned file is
// then a new one, `*replacement`, to be renamed over `*target` before the first line is
// written (a run that writes nothing leaves the old results). A FIFO without a reader is
// refused rather than waited for. Throws std::runtime_error naming the location.
std::FILE* open_results_file(const std::string& location, bool append, const std::vector<std::string>& inputs,
                             std::string* replacement, std::string* target);

// Whether this build can publish to MQTT (libmosquitto found at build time).
bool publisher_has_mqtt();

class Publisher {
 public:
  // Opens the destination (the file; for MQTT only checks the options: the broker may be
  // down now and come up later). Throws std::runtime_error naming the file or option.
  Publisher(PublisherOptions options, PublisherReport report);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues one line (no newline). Events are dropped only when the queue holds nothing
  // else. Returns false if something was dropped to make room.
  bool post(std::string line, bool event);
  // Waits until every queued line is sent (or dropped), up to timeout_ms; keeps running.
  // True when nothing is left waiting. For the end of a stream, before its EOS is posted.
  bool flush(int timeout_ms);
  // Sends what it can within drain_timeout_ms, counts the rest as dropped, stops the worker.
  // (stdout and files: checked between batches; a write in progress is waited for.)
  void close();
  PublisherStats stats() const;

 private:
  struct Line {
    std::string text;
    bool event;
  };
  void run_stream();
  void start_mqtt();
  void run_mqtt();
  void publish_status(const std::string& status, const std::string& reason);
  bool pop(Line* out);
  void report(const std::string& what);

  PublisherOptions options_;
  PublisherReport report_;
  std::FILE* file_ = nullptr;
  bool owns_file_ = false;
  std::string replacement_, target_;  // kFile: a new file not yet renamed over its target
  struct ::mosquitto* mosq_ = nullptr;  // kMqtt

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable settled_;  // a line left the queue or in-flight: for flush()
  std::deque<Line> queue_;
  PublisherStats stats_;
  bool closing_ = false;
  bool dropping_ = false;  // in a run of drops (reported once per run)
  uint64_t in_flight_ = 0; // handed to libmosquitto, not yet acknowledged
  bool refused_ = false;   // the broker answered the last CONNECT with a refusal
  std::set<int> status_mids_;  // status messages in flight: not lines, not counted
  std::string log_error_;  // libmosquitto's last error log (a TLS failure's reason)
  std::thread worker_;

  friend struct MqttCallbacks;
};

}  // namespace pefm

#endif  // PEFM_GST_PUBLISHER_H
