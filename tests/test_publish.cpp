// pefmpublish: JSON lines and defect events from GstPefmMeta, to a file and to a real
// mosquitto broker on 127.0.0.1 that the test starts, stops mid-stream and restarts; and
// behind a real pefmfilter.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common.h"
#include "gstpefmmeta.h"
#include "pefm/model_file.h"

extern char** environ;

namespace {

using nlohmann::json;

class Environment : public ::testing::Environment {
 public:
  void SetUp() override { gst_init(nullptr, nullptr); }
};
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new Environment);

std::string find_program(const std::string& name) {
  std::string path = g_getenv("PATH") ? g_getenv("PATH") : "";
  path += ":/usr/sbin:/usr/local/sbin:/sbin";
  std::istringstream dirs(path);
  for (std::string d; std::getline(dirs, d, ':');) {
    const std::string p = d + "/" + name;
    if (!d.empty() && access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

int64_t wall_ns() { return g_get_real_time() * 1000; }

// Whether this build has libmosquitto (tests/meson.build sets PEFM_HAVE_MQTT).
bool mqtt_built() {
  const char* v = std::getenv("PEFM_HAVE_MQTT");
  return v && std::string(v) == "1";
}
#define PEFM_MQTT_OR_SKIP() \
  if (!mqtt_built()) GTEST_SKIP() << "built without libmosquitto (Debian: libmosquitto-dev)"
// A real broker on 127.0.0.1 and a subscriber: the programs, besides libmosquitto.
#define PEFM_BROKER_OR_SKIP()                                                                  \
  PEFM_MQTT_OR_SKIP();                                                                         \
  if (find_program("mosquitto").empty() || find_program("mosquitto_sub").empty())              \
  GTEST_SKIP() << "mosquitto and mosquitto_sub not installed (Debian: mosquitto, mosquitto-clients)"

// One frame per character: '.' normal, 'A' anomalous, 'S' let through uninspected, '-'
// no meta at all, 'W' a normal buffer of a continuous web (pefmfilter continuous=true) that
// reports a web region ending in it.
GstBuffer* frame_buffer(char kind, guint64 index) {
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, 16, nullptr);
  gst_buffer_memset(buf, 0, 0, 16);
  GST_BUFFER_PTS(buf) = index * (GST_SECOND / 10);
  GST_BUFFER_DURATION(buf) = GST_SECOND / 10;
  if (kind == '-') return buf;
  GstPefmMeta* m = gst_buffer_add_pefm_meta(buf);
  m->threshold = 0.5f;
  m->calibrated = TRUE;
  if (kind == 'S') {
    m->inspected = FALSE;
    m->skip_reason = "late";
    return buf;
  }
  m->inspected = TRUE;
  m->anomalous = kind == 'A';
  if (kind == 'W') {
    m->continuous = TRUE;
    m->web_row = 512 * index;
    GstPefmRegion r{};
    r.x = 40, r.y = 0, r.width = 8, r.height = 6, r.area = 30, r.peak = 0.7f;
    r.web_y = 512 * index - 10, r.web_height = 16, r.web_x = 40, r.web_width = 8;
    r.web_y_mm = r.web_y / 4.0, r.web_x_mm = 4.0, r.height_mm = 4.0, r.width_mm = 0.8;
    r.closed_by = g_intern_static_string("ended");
    gst_pefm_meta_set_regions(m, 1, &r);
  }
  m->score = kind == 'A' ? 0.6f + 0.01f * static_cast<float>(index % 10) : 0.2f;
  m->raw_score = m->score * 3;
  const float map[4] = {0.1f, 0.2f, m->score, 0.3f};
  gst_pefm_meta_set_map(m, 2, 2, map, 2.0, 2.0);
  if (kind == 'A') {
    GstPefmRegion r{};
    r.x = 1, r.y = 2, r.width = 3, r.height = 4, r.area = 5, r.peak = m->score;
    gst_pefm_meta_set_regions(m, 1, &r);
  }
  return buf;
}

// pefmpublish's `stats` property.
json publish_stats(GstElement* pub) {
  GstStructure* s = nullptr;
  g_object_get(pub, "stats", &s, nullptr);
  json j;
  for (const char* f : {"posted", "sent", "dropped", "buffered", "connects"}) {
    guint64 v = 0;
    gst_structure_get_uint64(s, f, &v);
    j[f] = v;
  }
  gst_structure_free(s);
  return j;
}

// appsrc <src_props> ! pefmpublish <props> ! appsink, fed frame by frame.
class Pipeline {
 public:
  explicit Pipeline(const std::string& publish_props, const std::string& src_props = "") {
    const std::string desc =
        "appsrc name=src format=time caps=video/x-raw,format=GRAY8,width=4,height=4,framerate=10/1 " + src_props +
        " ! pefmpublish name=pub " + publish_props + " ! appsink name=sink sync=false";
    GError* err = nullptr;
    pipeline_ = gst_parse_launch(desc.c_str(), &err);
    if (err) ADD_FAILURE() << err->message;
    g_clear_error(&err);
    src_ = gst_bin_get_by_name(GST_BIN(pipeline_), "src");
    sink_ = gst_bin_get_by_name(GST_BIN(pipeline_), "sink");
    pub_ = gst_bin_get_by_name(GST_BIN(pipeline_), "pub");
    bus_ = gst_element_get_bus(pipeline_);
  }
  ~Pipeline() {
    gst_element_set_state(pipeline_, GST_STATE_NULL);
    gst_object_unref(bus_);
    gst_object_unref(pub_);
    gst_object_unref(sink_);
    gst_object_unref(src_);
    gst_object_unref(pipeline_);
  }
  // pefmpublish opens its destination going to PAUSED, synchronously: a bad setting fails
  // here. (The pipeline itself prerolls only once frames are fed.)
  GstStateChangeReturn play() { return gst_element_set_state(pipeline_, GST_STATE_PLAYING); }
  // Pushes the frames of `pattern` (each given to `decorate` first) and returns how many
  // reached the sink.
  int feed(const std::string& pattern, const std::function<void(GstBuffer*)>& decorate = nullptr) {
    for (char c : pattern) {
      GstBuffer* buf = frame_buffer(c, next_++);
      if (decorate) decorate(buf);
      if (gst_app_src_push_buffer(GST_APP_SRC(src_), buf) != GST_FLOW_OK) return -1;
    }
    int arrived = 0;
    for (size_t i = 0; i < pattern.size(); ++i) {
      GstSample* s = gst_app_sink_try_pull_sample(GST_APP_SINK(sink_), 10 * pefm_test::kTimeoutScale * GST_SECOND);
      if (!s) break;
      gst_sample_unref(s);
      ++arrived;
    }
    return arrived;
  }
  // EOS through, then stop, as gst-launch-1.0 does: the bus is read up to the EOS message
  // and no further, so what pefmpublish has to say must come before its EOS. Returns the
  // bus messages in order; with `read_stop`, also those posted while stopping.
  std::vector<GstMessage*> finish(bool read_stop = false) {
    gst_app_src_end_of_stream(GST_APP_SRC(src_));
    std::vector<GstMessage*> out;
    bool eos = false;
    while (!eos) {
      GstMessage* m = gst_bus_timed_pop(bus_, 20 * pefm_test::kTimeoutScale * GST_SECOND);
      if (!m) break;
      eos = GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
      out.push_back(m);
      if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) break;
    }
    EXPECT_TRUE(eos) << "no EOS";
    at_eos_ = stats();
    if (read_stop) {
      gst_element_set_state(pipeline_, GST_STATE_READY);
      while (GstMessage* m = gst_bus_pop(bus_)) out.push_back(m);
      return out;
    }
    gst_bus_set_flushing(bus_, TRUE);
    gst_element_set_state(pipeline_, GST_STATE_READY);
    gst_bus_set_flushing(bus_, FALSE);
    return out;
  }
  // The stats when finish() read the EOS message, before stopping.
  const json& stats_at_eos() const { return at_eos_; }
  // Waits up to `seconds` (scaled for the sanitizers) for a pefm-publish message whose
  // status holds `needle`; the element messages before it are dropped. Returns the
  // statuses seen, one a line.
  std::string wait_for_status(const std::string& needle, int seconds) {
    std::string seen;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds * pefm_test::kTimeoutScale);
    while (seen.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end) {
      GstMessage* m = gst_bus_timed_pop_filtered(bus_, GST_SECOND / 10, GST_MESSAGE_ELEMENT);
      if (!m) continue;
      if (gst_message_has_name(m, "pefm-publish"))
        seen += std::string(gst_structure_get_string(gst_message_get_structure(m), "status")) + "\n";
      gst_message_unref(m);
    }
    return seen;
  }
  // Stops without EOS, as a state change or Ctrl-C does.
  void stop_now() { gst_element_set_state(pipeline_, GST_STATE_READY); }
  // The first error on the bus, or "".
  std::string error() {
    GstMessage* m = gst_bus_pop_filtered(bus_, GST_MESSAGE_ERROR);
    if (!m) return "";
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(m, &e, &dbg);
    std::string text = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_clear_error(&e);
    g_free(dbg);
    gst_message_unref(m);
    return text;
  }
  json stats() { return publish_stats(pub_); }
  // The pipeline's clock time at its base time, on the system's wall clock (nanoseconds
  // since 1970): where running time 0 lies in UTC.
  int64_t wall_at_base() {
    GstClock* clock = gst_element_get_clock(pipeline_);
    if (!clock) return -1;
    const int64_t age = GST_CLOCK_DIFF(gst_element_get_base_time(pipeline_), gst_clock_get_time(clock));
    gst_object_unref(clock);
    return wall_ns() - age;
  }

 private:
  GstElement* pipeline_ = nullptr;
  GstElement* src_ = nullptr;
  GstElement* sink_ = nullptr;
  GstElement* pub_ = nullptr;
  GstBus* bus_ = nullptr;
  guint64 next_ = 0;
  json at_eos_;
};

void release(std::vector<GstMessage*>& messages) {
  for (auto* m : messages) gst_message_unref(m);
  messages.clear();
}

std::string warnings_of(const std::vector<GstMessage*>& messages) {
  std::string text;
  for (auto* m : messages) {
    if (GST_MESSAGE_TYPE(m) != GST_MESSAGE_WARNING) continue;
    GError* e = nullptr;
    gst_message_parse_warning(m, &e, nullptr);
    text += std::string(e->message) + "\n";
    g_clear_error(&e);
  }
  return text;
}

// Every line of `text` parsed strictly as JSON.
std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a JSON line: " << line << " (" << e.what() << ")";
    }
  }
  return out;
}

std::vector<json> of_type(const std::vector<json>& lines, const std::string& type) {
  std::vector<json> out;
  for (const auto& l : lines)
    if (l.at("type") == type) out.push_back(l);
  return out;
}

// docs/results.schema.json checked by tests/schema/validate_results.py (Debian's
// python3-jsonschema) on the JSON-lines `files`: the valid lines per type.
#define PEFM_JSONSCHEMA_OR_SKIP()                                                        \
  if (find_program("python3").empty() ||                                                 \
      pefm_test::run({find_program("python3"), "-c", "import jsonschema"}).status != 0) \
  GTEST_SKIP() << "python3-jsonschema not installed (Debian: python3-jsonschema)"
json schema_check(const std::vector<std::string>& files) {
  const std::string source = g_getenv("PEFM_SOURCE_DIR") ? g_getenv("PEFM_SOURCE_DIR") : ".";
  std::vector<std::string> argv = {find_program("python3"), source + "/tests/schema/validate_results.py",
                                   source + "/docs/results.schema.json"};
  argv.insert(argv.end(), files.begin(), files.end());
  const auto r = pefm_test::run(argv);
  EXPECT_EQ(r.status, 0) << r.output;
  const size_t counts = r.output.rfind('{');
  if (counts == std::string::npos) ADD_FAILURE() << "no counts from the schema check:\n" << r.output;
  return counts == std::string::npos ? json() : json::parse(r.output.substr(counts), nullptr, false);
}

// An ISO 8601 UTC time to the microsecond as nanoseconds since 1970, or -1.
int64_t utc_ns(const json& value) {
  if (!value.is_string()) return -1;
  const std::string text = value.get<std::string>();
  std::tm tm{};
  int micro = -1;
  char z = 0;
  if (text.size() != 27 || std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                                       &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &micro, &z) != 8 || z != 'Z')
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (static_cast<int64_t>(timegm(&tm)) * 1000000 + micro) * 1000;
}


// {"type": lines of that type}, as schema_check counts them.
json type_counts(const std::vector<json>& lines) {
  json counts = json::object();
  for (const auto& l : lines) counts[l.at("type").get<std::string>()] = counts.value(l.at("type").get<std::string>(), 0) + 1;
  return counts;
}

TEST(Publish, FileGetsALinePerFrameAndOneStartAndEndPerDefect) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("results.jsonl");
  //                     0123456789012
  const std::string pattern = "..AAA.S-..AA";
  {
    Pipeline p("method=file location=" + path + " source-id=line-7");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed(pattern), static_cast<int>(pattern.size()));
    auto messages = p.finish();
    EXPECT_EQ(warnings_of(messages), "");
    release(messages);
    const json stats = p.stats();
    EXPECT_EQ(stats["sent"], stats["posted"]) << stats;
    EXPECT_EQ(stats["dropped"], 0u) << stats;
  }
  const auto lines = json_lines(pefm_test::slurp(path));
  const auto frames = of_type(lines, "frame");
  ASSERT_EQ(frames.size(), pattern.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const json& f = frames[i];
    EXPECT_EQ(f.at("frame"), i);
    EXPECT_EQ(f.at("source"), "line-7");
    EXPECT_EQ(f.at("pts"), i * 100000000ull);
    EXPECT_EQ(f.at("running_time"), i * 100000000ull);
    const char* decision = pattern[i] == 'A' ? "anomalous" : pattern[i] == '.' ? "normal"
                           : pattern[i] == 'S' ? "uninspected" : "no-meta";
    EXPECT_EQ(f.at("decision"), decision) << f;
  }
  EXPECT_EQ(frames[2].at("regions").size(), 1u);
  EXPECT_EQ(frames[2].at("regions")[0].at("area"), 5);
  EXPECT_EQ(frames[2].at("map"), json({2, 2}));
  EXPECT_EQ(frames[6].at("skip_reason"), "late");

  const auto started = of_type(lines, "defect-started");
  const auto ended = of_type(lines, "defect-ended");
  ASSERT_EQ(started.size(), 2u);
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(started[0].at("frame"), 2);
  EXPECT_EQ(started[0].at("decision"), "anomalous");
  EXPECT_EQ(ended[0].at("reason"), "normal");
  EXPECT_EQ(ended[0].at("first_frame"), 2);
  EXPECT_EQ(ended[0].at("last_frame"), 4);
  EXPECT_EQ(ended[0].at("frames"), 3);
  EXPECT_NEAR(ended[0].at("peak_score").get<double>(), 0.64, 1e-6);
  EXPECT_EQ(started[1].at("frame"), 10);
  EXPECT_EQ(ended[1].at("reason"), "eos");  // still open at the end of the stream
  EXPECT_EQ(ended[1].at("last_frame"), 11);
  // Lines are in stream order: each event right after the frame line that caused it.
  std::vector<std::string> order;
  for (const auto& l : lines) order.push_back(l.at("type").get<std::string>() + std::to_string(l.at("frame").get<int>()));
  EXPECT_EQ(order[3], "defect-started2");
}

TEST(Publish, EndFramesKeepsADefectOpenAcrossShortGapsAndFramesCanBeFiltered) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("events.jsonl");
  {
    // An uninspected frame neither ends nor starts a defect; one normal frame does not
    // end it with end-frames=2, two do.
    Pipeline p("method=file location=" + path + " end-frames=2 frames=anomalous");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("A.AS.A..A"), 9);
    auto messages = p.finish();
    release(messages);
  }
  const auto lines = json_lines(pefm_test::slurp(path));
  const auto frames = of_type(lines, "frame");
  ASSERT_EQ(frames.size(), 4u);  // only the anomalous ones
  for (const auto& f : frames) EXPECT_EQ(f.at("decision"), "anomalous");
  const auto started = of_type(lines, "defect-started");
  const auto ended = of_type(lines, "defect-ended");
  ASSERT_EQ(started.size(), 2u);
  ASSERT_EQ(ended.size(), 2u);
  EXPECT_EQ(ended[0].at("first_frame"), 0);
  EXPECT_EQ(ended[0].at("last_frame"), 5);
  EXPECT_EQ(ended[0].at("frames"), 3);
  EXPECT_EQ(ended[0].at("reason"), "normal");
  EXPECT_EQ(started[1].at("frame"), 8);
  EXPECT_EQ(ended[1].at("reason"), "eos");
}

// Behind pefmfilter continuous=true each web region gets a "web-region" line, once, even
// from a buffer that is not anomalous (frames=anomalous sends no frame line for it), with
// its extent on the web in pixels and millimetres.
TEST(Publish, EachWebRegionGetsALineWithItsWebExtent) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("web.jsonl");
  {
    Pipeline p("method=file location=" + path + " frames=anomalous");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed(".W."), 3);
    auto messages = p.finish();
    release(messages);
  }
  const auto lines = json_lines(pefm_test::slurp(path));
  EXPECT_TRUE(of_type(lines, "frame").empty());
  const auto regions = of_type(lines, "web-region");
  ASSERT_EQ(regions.size(), 1u);
  const json& r = regions[0];
  EXPECT_EQ(r.at("frame"), 1);
  EXPECT_EQ(r.at("web_row"), 512);
  const json& g = r.at("region");
  EXPECT_EQ(g.at("web_y"), 502);
  EXPECT_EQ(g.at("web_height"), 16);
  EXPECT_EQ(g.at("web_x"), 40);
  EXPECT_EQ(g.at("web_width"), 8);
  EXPECT_EQ(g.at("closed_by"), "ended");
  EXPECT_DOUBLE_EQ(g.at("web_y_mm").get<double>(), 125.5);
  EXPECT_DOUBLE_EQ(g.at("width_mm").get<double>(), 0.8);
  EXPECT_EQ(g.at("y"), 0);
  PEFM_JSONSCHEMA_OR_SKIP();
  EXPECT_EQ(schema_check({path}), type_counts(lines));  // every line valid
}

// "utc" is the source's reference timestamp when it gives one (Unix or NTP time: an RTSP
// camera's clock through rtspsrc), else the system clock at capture for a live source, else
// the system clock as the line is made; "utc_source" says which. A defect's end carries the
// time of the frame that ended it and the time it started.
TEST(Publish, EveryLineSaysWhenInUtcAndWhereThatTimeCameFrom) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("utc.jsonl");
  std::tm at{};
  at.tm_year = 2026 - 1900, at.tm_mon = 11, at.tm_mday = 5, at.tm_hour = 6;  // 2026-12-05T06:00:00Z
  const guint64 unix_ns = static_cast<guint64>(timegm(&at)) * GST_SECOND + 250 * GST_MSECOND;
  const guint64 ntp_ns = unix_ns + G_GUINT64_CONSTANT(2208988800) * GST_SECOND + GST_SECOND;  // a second later
  GstCaps* unix_caps = gst_caps_from_string("timestamp/x-unix");
  GstCaps* ntp_caps = gst_caps_from_string("timestamp/x-ntp");
  int64_t before = 0, after = 0;
  {
    Pipeline p("method=file location=" + path);
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("A", [&](GstBuffer* b) {
      gst_buffer_add_reference_timestamp_meta(b, unix_caps, unix_ns, GST_CLOCK_TIME_NONE);
    }), 1);
    EXPECT_EQ(p.feed(".", [&](GstBuffer* b) {
      gst_buffer_add_reference_timestamp_meta(b, ntp_caps, ntp_ns, GST_CLOCK_TIME_NONE);
    }), 1);
    before = wall_ns();
    EXPECT_EQ(p.feed("."), 1);
    after = wall_ns();
    auto messages = p.finish();
    release(messages);
  }
  gst_caps_unref(unix_caps);
  gst_caps_unref(ntp_caps);
  const auto lines = json_lines(pefm_test::slurp(path));
  const auto frames = of_type(lines, "frame");
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].at("utc"), "2026-12-05T06:00:00.250000Z");
  EXPECT_EQ(frames[0].at("utc_source"), "reference:timestamp/x-unix");
  EXPECT_EQ(frames[1].at("utc"), "2026-12-05T06:00:01.250000Z");
  EXPECT_EQ(frames[1].at("utc_source"), "reference:timestamp/x-ntp");
  EXPECT_EQ(frames[2].at("utc_source"), "arrival");  // appsrc is not live: no capture time
  const int64_t t = utc_ns(frames[2].at("utc"));
  EXPECT_TRUE(t >= before / 1000 * 1000 && t <= after) << frames[2];
  const auto ended = of_type(lines, "defect-ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].at("utc"), frames[1].at("utc"));  // the frame that ended it
  EXPECT_EQ(ended[0].at("first_utc"), frames[0].at("utc"));
  EXPECT_EQ(of_type(lines, "defect-started").at(0).at("utc"), frames[0].at("utc"));
  for (const auto& l : lines) EXPECT_TRUE(l.at("model").is_null()) << "no pefmfilter, no model: " << l;

  // A live source: the frame's capture on the pipeline clock, as wall-clock time. The
  // frames are pushed at once, but stamped 100 ms apart: so are their times.
  const std::string live_path = dir.file("live.jsonl");
  int64_t base = -1;
  {
    Pipeline p("method=file location=" + live_path, "is-live=true");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    base = p.wall_at_base();
    EXPECT_EQ(p.feed("......"), 6);
    auto messages = p.finish();
    release(messages);
  }
  const auto live = of_type(json_lines(pefm_test::slurp(live_path)), "frame");
  ASSERT_EQ(live.size(), 6u);
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_EQ(live[i].at("utc_source"), "capture") << live[i];
    const int64_t expected = base + static_cast<int64_t>(i) * 100000000;  // base time + PTS
    EXPECT_NEAR(static_cast<double>(utc_ns(live[i].at("utc"))), static_cast<double>(expected), 20e6) << live[i];
  }
}

// The JSON lines pefmpublish wrote to `out` in pipeline `desc`, run to EOS; the element
// named `locked`, if any, is left stopped (in the pipeline, never started).
std::vector<json> lines_of_pipeline(const std::string& desc, const std::string& out, const char* locked = nullptr) {
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (err) ADD_FAILURE() << err->message;
  g_clear_error(&err);
  if (!pipeline) return {};
  if (locked) {
    GstElement* e = gst_bin_get_by_name(GST_BIN(pipeline), locked);
    gst_element_set_locked_state(e, TRUE);
    gst_object_unref(e);
  }
  GstBus* bus = gst_element_get_bus(pipeline);
  EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  GstMessage* done = gst_bus_timed_pop_filtered(bus, 20 * pefm_test::kTimeoutScale * GST_SECOND,
                                                static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  EXPECT_TRUE(done && GST_MESSAGE_TYPE(done) == GST_MESSAGE_EOS) << "no EOS";
  if (done) gst_message_unref(done);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipeline);
  return json_lines(pefm_test::slurp(out));
}

// Without source-id, "source" names what the pipeline reads: its one source element with
// a camera-name (aravissrc), device (v4l2src) or location (filesrc; rtspsrc, the login
// taken out), as FACTORY:VALUE; with none of those (appsrc, videotestsrc), the stream id.
TEST(Publish, TheSourceNamesTheFileOrCameraThePipelineReads) {
  pefm_test::TempDir dir;
  const std::string raw = dir.file("frames.gray"), out = dir.file("file.jsonl");
  const std::string out_rtsp = dir.file("rtsp.jsonl"), out_test = dir.file("test.jsonl");
  pefm_test::spit(raw, std::string(16 * 3, '\x40'));  // three 4x4 GRAY8 frames
  auto lines = lines_of_pipeline("filesrc location=" + raw +
                                     " ! rawvideoparse format=gray8 width=4 height=4 framerate=10/1"
                                     " ! pefmpublish method=file location=" + out + " ! fakesink",
                                 out);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& l : lines) {
    EXPECT_EQ(l.at("source"), "filesrc:" + raw);
    EXPECT_EQ(l.at("decision"), "no-meta");  // no pefmfilter here
  }
  // An RTSP camera (never started here) is named by its URL, never with its password or
  // the query where some cameras take a token.
  lines = lines_of_pipeline("videotestsrc num-buffers=2 ! video/x-raw,format=GRAY8,width=4,height=4"
                            " ! pefmpublish method=file location=" + out_rtsp + " ! fakesink "
                            "rtspsrc name=cam location=\"rtsp://pefm:sec@ret@127.0.0.1:9/line1?token=abc\"",
                            out_rtsp, "cam");
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& l : lines) EXPECT_EQ(l.at("source"), "rtspsrc:rtsp://127.0.0.1:9/line1");
  // Nothing names it: the stream id, as before.
  lines = lines_of_pipeline("videotestsrc num-buffers=1 ! video/x-raw,format=GRAY8,width=4,height=4"
                            " ! pefmpublish method=file location=" + out_test + " ! fakesink",
                            out_test);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("source").get<std::string>().size(), 32u) << lines[0];  // videotestsrc's hashed id
}

TEST(Publish, ADefectStillOpenWhenThePipelineStopsIsEndedWithReasonStop) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("stop.jsonl");
  {
    Pipeline p("method=file location=" + path + " frames=none");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..AA"), 4);
    p.stop_now();  // no EOS
  }
  const auto lines = json_lines(pefm_test::slurp(path));
  ASSERT_EQ(lines.size(), 2u) << pefm_test::slurp(path);
  EXPECT_EQ(lines[0].at("type"), "defect-started");
  EXPECT_EQ(lines[1].at("type"), "defect-ended");
  EXPECT_EQ(lines[1].at("reason"), "stop");
  EXPECT_EQ(lines[1].at("last_frame"), 3);
}

// A destination that stops taking lines (a pipe nobody reads): the frames flow on, frame
// lines are dropped oldest first, and every defect event still arrives once it reads again.
TEST(Publish, AStalledDestinationLosesFrameLinesFirstAndKeepsEveryEvent) {
  pefm_test::TempDir dir;
  const std::string fifo = dir.file("stalled.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // lets the writer open; nobody reads yet
  ASSERT_GE(reader, 0);
  // 400 frame lines (about 130 KB) fill the pipe (64 KiB) and block the writer; then two
  // defects.
  const std::string pattern = std::string(400, '.') + "....AAA.....AA......";
  Pipeline p("method=file location=" + fifo + " max-buffered=5 drain-timeout=20000");
  ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
  EXPECT_EQ(p.feed(pattern), static_cast<int>(pattern.size())) << "frames stopped while the file was stuck";
  const json stalled = p.stats();
  EXPECT_GT(stalled["dropped"].get<int>(), 0) << stalled;

  std::string received;
  std::thread drain([&] {
    fcntl(reader, F_SETFL, fcntl(reader, F_GETFL) & ~O_NONBLOCK);
    char buf[65536];
    for (ssize_t n; (n = read(reader, buf, sizeof buf)) > 0;) received.append(buf, static_cast<size_t>(n));
  });
  auto messages = p.finish();  // the writer drains, then closes the pipe: EOF for the reader
  drain.join();
  close(reader);
  EXPECT_NE(warnings_of(messages).find("dropping"), std::string::npos) << warnings_of(messages);
  release(messages);
  EXPECT_EQ(p.stats_at_eos()["buffered"], 0u) << "the EOS went on before the queue was written";

  const auto lines = json_lines(received);
  const json stats = p.stats();
  EXPECT_EQ(stats["sent"].get<size_t>(), lines.size()) << stats;
  EXPECT_EQ(stats["sent"].get<int>() + stats["dropped"].get<int>(), stats["posted"].get<int>()) << stats;
  std::vector<std::string> events;
  for (const auto& l : lines)
    if (l.at("type") != "frame") events.push_back(l.at("type").get<std::string>() + "@" + std::to_string(l.at("frame").get<int>()));
  EXPECT_EQ(events, (std::vector<std::string>{"defect-started@404", "defect-ended@406", "defect-started@412",
                                               "defect-ended@413"}));
}

TEST(Publish, BadSettingsAreClearErrorsNamingTheProperty) {
  pefm_test::TempDir dir;
  {
    const std::string path = dir.file("no/such/folder/r.jsonl");
    Pipeline p("method=file location=" + path);
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE);
    const std::string e = p.error();
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("location"), std::string::npos) << e;
  }
  if (!mqtt_built()) {
    Pipeline p("method=mqtt");
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE);
    EXPECT_NE(p.error().find("libmosquitto"), std::string::npos);
    return;
  }
  {
    Pipeline p("method=mqtt address=localhost:99999");
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE);
    const std::string e = p.error();
    EXPECT_NE(e.find("address"), std::string::npos) << e;
    EXPECT_NE(e.find("99999"), std::string::npos) << e;
  }
  {
    Pipeline p("method=mqtt topic=line/#");
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE);
    const std::string e = p.error();
    EXPECT_NE(e.find("line/#"), std::string::npos) << e;
  }
  {
    Pipeline p("method=file");
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE);
    EXPECT_NE(p.error().find("location"), std::string::npos);
  }
}

// ---------------------------------------------------------------- behind a real pefmfilter

constexpr int kFrameW = 96, kFrameH = 64;

// A tiny random-weight model calibrated on clean textures, made once for the suite: enough
// for pefmfilter to attach real metadata (what it decides is not what is tested here).
const std::string& filter_model() {
  static const pefm_test::TempDir dir;
  static const std::string path = [] {
    const auto model = pefm_test::tiny_model(1);
    pefm_test::calibrate_on_textures(model, kFrameH, kFrameW);
    const std::string file = dir.file("tiny.pt");
    pefm::save_model(*model, file);
    return file;
  }();
  return path;
}

// What pefmfilter attached to one frame, as the frame left pefmpublish.
struct FilterFrame {
  bool anomalous = false, calibrated = false;
  float score = 0, raw_score = 0, threshold = 0;
  guint map_width = 0, map_height = 0;
  std::vector<GstPefmRegion> regions;
};

// appsrc ! pefmfilter ! pefmpublish <publish_props> ! appsink, one frame per character of
// `pattern` ('.' a clean texture, 'A' one with a bright patch), run to EOS and stopped
// (pefmpublish drains as it stops; appsink posts EOS without waiting for its samples to be
// taken). Returns each frame's meta; `stats` gets pefmpublish's.
std::vector<FilterFrame> run_filter_pipeline(const std::string& pattern, const std::string& publish_props,
                                             json* stats) {
  const std::string desc = "appsrc name=src format=time caps=video/x-raw,format=RGB,width=" +
                           std::to_string(kFrameW) + ",height=" + std::to_string(kFrameH) +
                           ",framerate=10/1 ! pefmfilter device=cpu model=\"" + filter_model() +
                           "\" ! pefmpublish name=pub " + publish_props + " ! appsink name=sink sync=false wait-on-eos=false";
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (err) ADD_FAILURE() << err->message;
  g_clear_error(&err);
  if (!pipeline) return {};
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* pub = gst_bin_get_by_name(GST_BIN(pipeline), "pub");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstBus* bus = gst_element_get_bus(pipeline);
  EXPECT_NE(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_FAILURE);
  for (size_t i = 0; i < pattern.size(); ++i) {
    auto img = pefm_test::texture_image(kFrameH, kFrameW, 700 + i);
    if (pattern[i] == 'A') img = pefm_test::paste_patch(img, 20, 30, 16);
    img = img.contiguous();
    const auto size = static_cast<gsize>(img.numel());
    GstBuffer* buf = gst_buffer_new_allocate(nullptr, size, nullptr);
    gst_buffer_fill(buf, 0, img.data_ptr<uint8_t>(), size);
    GST_BUFFER_PTS(buf) = i * (GST_SECOND / 10);
    GST_BUFFER_DURATION(buf) = GST_SECOND / 10;
    EXPECT_EQ(gst_app_src_push_buffer(GST_APP_SRC(src), buf), GST_FLOW_OK);
  }
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  GstMessage* done = gst_bus_timed_pop_filtered(bus, 60 * pefm_test::kTimeoutScale * GST_SECOND,
                                                static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  std::string why = done ? "" : "no EOS";
  if (done && GST_MESSAGE_TYPE(done) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(done, &e, &dbg);
    why = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_clear_error(&e);
    g_free(dbg);
  }
  if (done) gst_message_unref(done);
  EXPECT_EQ(why, "");
  // After EOS the samples wait in appsink: a zero timeout takes each, then returns null.
  std::vector<FilterFrame> frames;
  while (GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 0)) {
    FilterFrame f;
    const GstPefmMeta* m = gst_buffer_get_pefm_meta(gst_sample_get_buffer(sample));
    EXPECT_NE(m, nullptr) << "frame " << frames.size() << " left pefmfilter without its meta";
    if (m) {
      f.anomalous = m->anomalous;
      f.calibrated = m->calibrated;
      f.score = m->score;
      f.raw_score = m->raw_score;
      f.threshold = m->threshold;
      f.map_width = m->map_width;
      f.map_height = m->map_height;
      f.regions.assign(m->regions, m->regions + m->n_regions);
    }
    frames.push_back(f);
    gst_sample_unref(sample);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  *stats = publish_stats(pub);  // the last run's, kept after stop
  gst_object_unref(bus);
  gst_object_unref(sink);
  gst_object_unref(pub);
  gst_object_unref(src);
  gst_object_unref(pipeline);
  return frames;
}

// pefmpublish's `lines` for `frames` (what pefmfilter attached, in stream order): a "frame"
// line per frame, numbered 0..N-1 and stamped with the times fed, with every field the
// element documents and the meta's values; a defect start and end per run of anomalous frames.
void expect_lines_match(const std::vector<json>& lines, const std::vector<FilterFrame>& frames,
                        const std::string& source) {
  // Every line names the model by its file name and the SHA-256 of its bytes, and says
  // when: appsrc is not live, so the time is the system clock's as the line was made.
  const std::string model = pefm_test::slurp(filter_model());
  gchar* sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar*>(model.data()), model.size());
  const json named = {{"name", "tiny.pt"}, {"sha256", sha}};
  g_free(sha);
  for (const auto& l : lines) {
    EXPECT_EQ(l.at("model"), named) << l;
    EXPECT_EQ(l.at("utc_source"), "arrival") << l;
    const int64_t t = utc_ns(l.at("utc"));
    EXPECT_TRUE(t > wall_ns() - 600 * int64_t(1000000000) && t <= wall_ns()) << l;
  }
  const auto frame_lines = of_type(lines, "frame");
  ASSERT_EQ(frame_lines.size(), frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    const json& f = frame_lines[i];
    const FilterFrame& m = frames[i];
    SCOPED_TRACE("frame " + std::to_string(i) + ": " + f.dump());
    for (const char* key : {"type", "source", "frame", "pts", "running_time", "stream_time", "decision", "score",
                            "raw_score", "threshold", "region_threshold", "region_level", "anomalous", "calibrated",
                            "map", "regions"})
      EXPECT_TRUE(f.contains(key)) << "no '" << key << "'";
    EXPECT_EQ(f.at("frame"), i);
    EXPECT_EQ(f.at("source"), source);
    const guint64 t = i * 100000000ull;  // 10 frames/s from 0
    EXPECT_EQ(f.at("pts"), t);
    EXPECT_EQ(f.at("running_time"), t);
    EXPECT_EQ(f.at("stream_time"), t);
    EXPECT_EQ(f.at("decision"), m.anomalous ? "anomalous" : "normal");
    EXPECT_EQ(f.at("anomalous"), m.anomalous);
    EXPECT_EQ(f.at("calibrated"), m.calibrated);
    EXPECT_TRUE(m.calibrated);
    // Scores are written rounded to 6 decimals.
    EXPECT_NEAR(f.at("score").get<double>(), m.score, 1e-6);
    EXPECT_NEAR(f.at("raw_score").get<double>(), m.raw_score, 1e-6);
    EXPECT_NEAR(f.at("threshold").get<double>(), m.threshold, 1e-6);
    EXPECT_GT(m.map_width, 0u);
    EXPECT_EQ(f.at("map"), json({m.map_width, m.map_height}));
    const json& regions = f.at("regions");
    ASSERT_EQ(regions.size(), m.regions.size());
    for (size_t k = 0; k < m.regions.size(); ++k) {
      const GstPefmRegion& r = m.regions[k];
      const json& g = regions[k];
      EXPECT_EQ(g.at("x"), r.x);
      EXPECT_EQ(g.at("y"), r.y);
      EXPECT_EQ(g.at("width"), r.width);
      EXPECT_EQ(g.at("height"), r.height);
      EXPECT_EQ(g.at("area"), r.area);
      EXPECT_NEAR(g.at("peak").get<double>(), r.peak, 1e-6);
    }
  }
  // end-frames=1 (the default): the first normal frame after a run of anomalous ones ends
  // the defect, which names its last frame; a run still open at the end ends at EOS.
  std::vector<std::string> expected, events;
  for (size_t i = 0; i < frames.size(); ++i) {
    const bool last = i + 1 == frames.size();
    if (frames[i].anomalous && (i == 0 || !frames[i - 1].anomalous))
      expected.push_back("defect-started@" + std::to_string(i));
    if (frames[i].anomalous && (last || !frames[i + 1].anomalous))
      expected.push_back("defect-ended@" + std::to_string(i) + (last ? ":eos" : ":normal"));
  }
  for (const auto& l : lines) {
    const auto type = l.at("type").get<std::string>();
    if (type == "frame") continue;
    EXPECT_TRUE(type == "defect-started" || type == "defect-ended") << l;
    events.push_back(type + "@" + std::to_string(l.at("frame").get<int>()) +
                     (type == "defect-ended" ? ":" + l.at("reason").get<std::string>() : std::string()));
  }
  EXPECT_EQ(events, expected);
}

// A real pefmfilter ! pefmpublish pipeline: every frame pefmfilter inspected becomes a line
// of the file carrying the meta's decision, scores, map and regions; the file is JSON lines.
TEST(Publish, BehindPefmfilterEveryFrameGetsALineWithItsResult) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("results.jsonl");
  const std::string pattern = "..AA...A..";
  json stats;
  const auto frames =
      run_filter_pipeline(pattern, "method=file location=" + path + " source-id=cam1 drain-timeout=20000", &stats);
  ASSERT_EQ(frames.size(), pattern.size()) << "frames lost on the way";
  const std::string text = pefm_test::slurp(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "the last line is unfinished";
  const auto lines = json_lines(text);  // each line parsed strictly
  EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), lines.size()) << "empty lines:\n" << text;
  expect_lines_match(lines, frames, "cam1");
  EXPECT_EQ(stats["posted"], lines.size()) << stats;
  EXPECT_EQ(stats["sent"], stats["posted"]) << stats;
  EXPECT_EQ(stats["dropped"], 0u) << stats;
  PEFM_JSONSCHEMA_OR_SKIP();
  EXPECT_EQ(schema_check({path}), type_counts(lines));  // every line valid
}

// The error a pipeline `desc` ends with when it cannot start ("" when it starts).
std::string start_error(const std::string& desc) {
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(desc.c_str(), &err);
  if (err) ADD_FAILURE() << err->message;
  g_clear_error(&err);
  if (!pipeline) return "no pipeline";
  std::string why;
  if (gst_element_set_state(pipeline, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE) {
    GstBus* bus = gst_element_get_bus(pipeline);
    if (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
      GError* e = nullptr;
      gst_message_parse_error(m, &e, nullptr);
      why = e->message;
      g_clear_error(&e);
      gst_message_unref(m);
    } else {
      why = "failed without an error message";
    }
    gst_object_unref(bus);
  }
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return why;
}

// method=file follows the tools' output rules: the pipeline's own model, a file of another
// kind and a folder are refused at start, untouched, naming the location; an existing
// results file is replaced, or added to with append=true.
TEST(Publish, FileOutputNeverReplacesTheModelOrAFileOfAnotherKind) {
  pefm_test::TempDir dir;
  const std::string model = filter_model(), bytes = pefm_test::slurp(model);
  const auto pipeline = [&](const std::string& props) {
    return "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=96,height=64 ! pefmfilter device=cpu model=\"" +
           model + "\" ! pefmpublish " + props + " ! fakesink";
  };
  std::string e = start_error(pipeline("method=file location=\"" + model + "\""));
  EXPECT_NE(e.find("location '" + model + "' is '" + model + "', which this pipeline also uses"), std::string::npos) << e;
  EXPECT_EQ(pefm_test::slurp(model), bytes) << "the model was written to";
  // The same model by another name (a link) is the same file.
  const auto link = dir.file("link.pt");
  std::filesystem::create_symlink(model, link);
  e = start_error(pipeline("method=file location=\"" + link + "\""));
  EXPECT_NE(e.find("which this pipeline also uses"), std::string::npos) << e;
  EXPECT_EQ(pefm_test::slurp(model), bytes);
  // Another model, an image: not results files.
  const auto other = dir.file("other.pt");
  pefm_test::spit(other, bytes);
  e = start_error(pipeline("method=file location=\"" + other + "\""));
  EXPECT_NE(e.find("exists and is not a pefmpublish results file"), std::string::npos) << e;
  EXPECT_EQ(pefm_test::slurp(other), bytes);
  e = start_error(pipeline("method=file location=\"" + dir.path() + "\""));
  EXPECT_NE(e.find("is a folder"), std::string::npos) << e;
  // Another tool's JSON (a pefm-eval report) is not pefmpublish's results either.
  const auto report = dir.file("report.json");
  pefm_test::spit(report, "{\n  \"image_auroc\": 0.9\n}\n");
  e = start_error(pipeline("method=file location=\"" + report + "\""));
  EXPECT_NE(e.find("is not a pefmpublish results file"), std::string::npos) << e;
  // A FIFO nobody reads is refused, not waited for.
  const auto fifo = dir.file("unread.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  e = start_error(pipeline("method=file location=\"" + fifo + "\""));
  EXPECT_NE(e.find("is a FIFO nobody reads"), std::string::npos) << e;

  // A results file is replaced by this run's lines; with append=true they follow the old ones.
  const auto results = dir.file("r.jsonl");
  const std::string old_lines = "{\"type\":\"old\",\"n\":0}\n{\"type\":\"old\",\"n\":1}\n";
  pefm_test::spit(results, old_lines);
  ASSERT_EQ(chmod(results.c_str(), 0640), 0);
  // A pipeline that fails to start (its model is missing) leaves the old results whole.
  e = start_error("videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=96,height=64 ! pefmfilter device=cpu "
                  "model=\"" + dir.file("missing.pt") + "\" ! pefmpublish method=file location=\"" + results +
                  "\" ! fakesink");
  EXPECT_NE(e.find("missing.pt"), std::string::npos) << e;
  EXPECT_EQ(pefm_test::slurp(results), old_lines);
  json stats;
  run_filter_pipeline("...", "method=file location=" + results, &stats);
  auto lines = json_lines(pefm_test::slurp(results));
  EXPECT_EQ(of_type(lines, "old").size(), 0u);
  EXPECT_EQ(of_type(lines, "frame").size(), 3u);
  struct stat st {};
  ASSERT_EQ(stat(results.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "the replaced file lost its permissions";
  for (const auto& e2 : std::filesystem::directory_iterator(dir.path()))
    EXPECT_EQ(e2.path().string().find(".tmp-"), std::string::npos) << e2.path() << " left behind";
  pefm_test::spit(results, old_lines);
  run_filter_pipeline("...", "method=file append=true location=" + results, &stats);
  const auto text = pefm_test::slurp(results);
  EXPECT_EQ(text.substr(0, old_lines.size()), old_lines);
  lines = json_lines(text);
  EXPECT_EQ(of_type(lines, "old").size(), 2u);
  EXPECT_EQ(of_type(lines, "frame").size(), 3u);
}

// A second run in the same process (a pipeline played again, or a new one on the same
// location) adds its lines to the results file, and says so on the bus, instead of
// silently replacing the first run's. A file changed since (another writer) is replaced.
TEST(Publish, ASecondRunInOneProcessAddsToTheResultsFileAndSaysSo) {
  pefm_test::TempDir dir;
  const std::string path = dir.file("results.jsonl");
  const auto run_frames = [&](const std::string& pattern) {
    Pipeline p("method=file location=" + path);
    EXPECT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed(pattern), static_cast<int>(pattern.size()));
    auto messages = p.finish();
    bool said = false;
    for (auto* m : messages) {
      if (GST_MESSAGE_TYPE(m) != GST_MESSAGE_INFO) continue;
      GError* e = nullptr;
      gst_message_parse_info(m, &e, nullptr);
      said = said || std::string(e->message).find("Appending to '" + path + "'") != std::string::npos;
      g_clear_error(&e);
    }
    release(messages);
    return said;
  };
  EXPECT_FALSE(run_frames("..."));
  ASSERT_EQ(of_type(json_lines(pefm_test::slurp(path)), "frame").size(), 3u);
  EXPECT_TRUE(run_frames("..")) << "the second run did not say it appends";
  const auto frames = of_type(json_lines(pefm_test::slurp(path)), "frame");
  ASSERT_EQ(frames.size(), 5u) << "the first run's lines were lost";
  EXPECT_EQ(frames[3].at("frame"), 0u);  // the second run numbers its frames from 0
  // Rewritten by someone else since: not this process's results any more, replaced.
  pefm_test::spit(path, "{\"type\":\"note\"}\n");
  EXPECT_FALSE(run_frames(".."));
  EXPECT_EQ(json_lines(pefm_test::slurp(path)).size(), 2u);
}

// ---------------------------------------------------------------- a real broker

// A loopback port bound and held without listen(): a connection to it is refused, and no
// other process can take the port while this lives (a port found free, then closed, can be).
class RefusingPort {
 public:
  RefusingPort() : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

// A child process with stdout and stderr appended to `log`; SIGTERM and reaped on stop().
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Child() { stop(); }
  bool running() const { return pid_ > 0; }
  // Whether the process has ended (it is then reaped), or never started.
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }
  // As a crash or the OOM killer ends it: no chance to say goodbye.
  void kill_hard() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// The file's text so far ("" before it exists).
std::string text_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// `text` up to its last newline: what a writer still writing has finished.
std::string complete_lines(const std::string& text) { return text.substr(0, text.rfind('\n') + 1); }

// Waits (polling) until `path` contains `needle`, `seconds` at most (more under the
// sanitizers).
bool wait_for_text(const std::string& path, const std::string& needle, int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds * pefm_test::kTimeoutScale);
  while (std::chrono::steady_clock::now() < end) {
    if (text_of(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// mosquitto on 127.0.0.1, keeping sessions across a restart (so that the test's
// subscriber misses nothing published while it reconnects). The first start() finds the
// port by binding it: mosquitto is started on a port, and on another when it cannot bind
// that one; a port found free beforehand could be taken before mosquitto bound it.
class Broker {
 public:
  // `secure`: lines of mosquitto.conf for the listener (TLS) and the login (their files in
  // `dir`); empty: anonymous, in the clear.
  explicit Broker(const pefm_test::TempDir& dir, std::string secure = "") : dir_(dir), secure_(std::move(secure)) {}
  // Starts mosquitto, on the port of the first start once there was one (pefmpublish
  // reconnects there); false when it does not run.
  bool start() {
    if (port_ > 0) return launch(port_) == Launch::kRunning;
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int port = candidate_port();
      const Launch how = launch(port);
      if (how == Launch::kRunning) {
        port_ = port;
        return true;
      }
      if (how == Launch::kHung) return false;
    }
    return false;
  }
  void stop() { child_.reset(); }
  int port() const { return port_; }

 private:
  enum class Launch { kRunning, kExited, kHung };

  // Below Linux's ephemeral range (32768-60999), from which outgoing connections get their
  // ports: nothing takes the port in passing while the broker is down for its restart.
  static int candidate_port() {
    static std::mt19937 rng(std::random_device{}());
    return std::uniform_int_distribution<int>(20000, 32000)(rng);
  }

  // mosquitto on `port`, once its log says it runs (it has bound the port), or it exits
  // (the port is taken: "Address already in use").
  Launch launch(int port) {
    {
      std::ofstream conf(dir_.file("mosquitto.conf"));
      conf << "listener " << port << " 127.0.0.1\n"
           << (secure_.empty() ? "allow_anonymous true\n" : secure_)
           << "persistence true\nlog_type all\npersistence_location " << dir_.path() << "/\n";
      // As root mosquitto would switch to the user "mosquitto", who cannot write here.
      if (geteuid() == 0) conf << "user root\n";
    }
    const std::string log = dir_.file("broker.log");
    const size_t before = text_of(log).size();
    child_ = std::make_unique<Child>(
        std::vector<std::string>{find_program("mosquitto"), "-c", dir_.file("mosquitto.conf")}, log);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10 * pefm_test::kTimeoutScale);
    while (std::chrono::steady_clock::now() < end) {
      if (text_of(log).find("running", before) != std::string::npos) return Launch::kRunning;
      if (child_->exited()) {
        child_.reset();
        return Launch::kExited;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    child_.reset();
    return Launch::kHung;
  }

  const pefm_test::TempDir& dir_;
  const std::string secure_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

TEST(Publish, MqttEveryLineArrivesThroughABrokerRestartAndTheVideoKeepsFlowing) {
  PEFM_BROKER_OR_SKIP();
  pefm_test::TempDir dir;
  Broker broker(dir);
  ASSERT_TRUE(broker.start()) << text_of(dir.file("broker.log"));
  const int port = broker.port();
  // A persistent subscriber (clean session off, QoS 1): what is published while it is away
  // waits for it in the broker.
  const std::string received = dir.file("received.txt");
  Child sub({find_program("mosquitto_sub"), "-h", "127.0.0.1", "-p", std::to_string(port), "-t", "line1/pefm",
             "-q", "1", "-c", "-i", "pefm-test-sub"},
            received);
  // subscribed, not only connected
  ASSERT_TRUE(wait_for_text(dir.file("broker.log"), "Sending SUBACK to pefm-test-sub", 10))
      << text_of(dir.file("broker.log"));

  const std::string part1 = "....AAA...";  // 0-9
  const std::string part2 = "..AA......";  // 10-19: the broker is down
  const std::string part3 = "AA..A....."; // 20-29
  Pipeline p("method=mqtt address=127.0.0.1:" + std::to_string(port) +
             " topic=line1/pefm qos=1 source-id=cam0 drain-timeout=20000");
  ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
  EXPECT_EQ(p.feed(part1), 10);
  ASSERT_TRUE(wait_for_text(received, "\"frame\":9,", 20)) << "the first frames did not arrive";

  broker.stop();
  EXPECT_EQ(p.feed(part2), 10) << "frames stopped flowing while the broker was down";
  const json down = p.stats();
  EXPECT_GT(down["buffered"].get<int>(), 0) << down;  // held, not lost

  ASSERT_TRUE(broker.start()) << text_of(dir.file("broker.log"));
  EXPECT_EQ(p.feed(part3), 10);
  auto messages = p.finish();  // drains within drain-timeout
  const std::string warnings = warnings_of(messages);
  EXPECT_NE(warnings.find("disconnected"), std::string::npos) << "the lost connection was not reported";
  int reports = 0;
  for (auto* m : messages)
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ELEMENT && gst_message_has_name(m, "pefm-publish")) ++reports;
  EXPECT_GE(reports, 3);  // connected, disconnected, connected again
  release(messages);
  const json stats = p.stats();
  EXPECT_EQ(stats["dropped"], 0u) << stats;
  EXPECT_EQ(stats["buffered"], 0u) << stats;
  EXPECT_EQ(stats["sent"], stats["posted"]) << stats;  // each line acknowledged once
  EXPECT_GE(stats["connects"].get<int>(), 2) << stats;
  // 30 frame lines and 4 defects' start and end: 38 lines.
  EXPECT_EQ(stats["posted"], 38u) << stats;

  const auto arrived_all = [&] {
    std::set<int> frames;
    int events = 0;
    for (const auto& l : json_lines(complete_lines(text_of(received)))) {  // mosquitto_sub may be mid-line
      if (l.at("type") == "frame") frames.insert(l.at("frame").get<int>());
      else ++events;
    }
    return frames.size() == 30 && events >= 8;
  };
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30 * pefm_test::kTimeoutScale);
  while (!arrived_all() && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  sub.stop();
  broker.stop();

  // QoS 1 is "at least once": a line resent after the restart may arrive twice.
  std::set<int> frames;
  std::set<std::string> events;
  for (const auto& l : json_lines(text_of(received))) {
    EXPECT_EQ(l.at("source"), "cam0");
    if (l.at("type") == "frame")
      frames.insert(l.at("frame").get<int>());
    else
      events.insert(l.at("type").get<std::string>() + "@" + std::to_string(l.at("frame").get<int>()));
  }
  std::set<int> all;
  for (int i = 0; i < 30; ++i) all.insert(i);
  EXPECT_EQ(frames, all);
  const std::set<std::string> expected_events = {"defect-started@4",  "defect-ended@6",  "defect-started@12",
                                                 "defect-ended@13",   "defect-started@20", "defect-ended@21",
                                                 "defect-started@24", "defect-ended@24"};
  EXPECT_EQ(events, expected_events);
}

TEST(Publish, ABrokerThatNeverAnswersCostsNoFramesAndDropsAreCountedAndReported) {
  // Nothing listens on this port (held for the whole test): the lines pile up to
  // max-buffered, the oldest frame lines go, events stay, and the frames pass as if nothing
  // happened.
  PEFM_MQTT_OR_SKIP();
  const RefusingPort refusing;
  ASSERT_GT(refusing.port(), 0);
  Pipeline p("method=mqtt address=127.0.0.1:" + std::to_string(refusing.port()) +
             " max-buffered=5 drain-timeout=0");
  ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
  EXPECT_EQ(p.feed("..........AA........"), 20);
  const json stats = p.stats();
  EXPECT_EQ(stats["posted"], 22u) << stats;  // 20 frames, a defect's start and end
  EXPECT_EQ(stats["dropped"], 17u) << stats;
  EXPECT_EQ(stats["buffered"], 5u) << stats;
  EXPECT_EQ(stats["sent"], 0u) << stats;
  auto messages = p.finish(/*read_stop=*/true);
  const std::string warnings = warnings_of(messages);
  EXPECT_NE(warnings.find("dropping"), std::string::npos) << warnings;
  // counted before the EOS message, where gst-launch still reads the bus ...
  const std::string said = "dropped 17 of 22 lines by the end of the stream; 5 more still waiting";
  size_t said_at = messages.size(), eos_at = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    if (GST_MESSAGE_TYPE(messages[i]) == GST_MESSAGE_EOS) eos_at = std::min(eos_at, i);
    if (GST_MESSAGE_TYPE(messages[i]) == GST_MESSAGE_WARNING &&
        warnings_of({messages[i]}).find(said) != std::string::npos)
      said_at = i;
  }
  EXPECT_LT(said_at, eos_at) << warnings;
  // ... and not again at stop, where the 5 waiting lines are dropped as said
  EXPECT_EQ(warnings.find("pefmpublish dropped 22 of 22"), std::string::npos) << warnings;
  EXPECT_EQ(p.stats()["dropped"], 22u);
  release(messages);
}

// A server that accepts the connection but never speaks MQTT (a listening socket nobody
// answers on): said within seconds as no MQTT answer, naming the address, and retried;
// the frames flow meanwhile.
TEST(Publish, AServerThatIsNotAnMqttBrokerIsSaidToBeOne) {
  PEFM_MQTT_OR_SKIP();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 8), 0);  // the kernel completes connections; nothing reads them
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string address = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  Pipeline p("method=mqtt address=" + address + " drain-timeout=0");
  ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
  EXPECT_EQ(p.feed("..."), 3);
  const std::string says = "connection failed: no MQTT answer from " + address + " within 5 s";
  const std::string statuses = p.wait_for_status(says, 30);
  EXPECT_NE(statuses.find(says), std::string::npos) << statuses;
  auto messages = p.finish();
  release(messages);
  close(fd);
}

// The same pipeline publishing to a real broker: a subscriber gets every line.
TEST(Publish, BehindPefmfilterEveryFrameReachesAnMqttSubscriber) {
  PEFM_BROKER_OR_SKIP();
  pefm_test::TempDir dir;
  Broker broker(dir);
  ASSERT_TRUE(broker.start()) << text_of(dir.file("broker.log"));
  const std::string port = std::to_string(broker.port());
  const std::string received = dir.file("received.txt");
  Child sub({find_program("mosquitto_sub"), "-h", "127.0.0.1", "-p", port, "-t", "line2/pefm", "-q", "1", "-i",
             "pefm-test-filter-sub"},
            received);
  ASSERT_TRUE(wait_for_text(dir.file("broker.log"), "Sending SUBACK to pefm-test-filter-sub", 10))
      << text_of(dir.file("broker.log"));

  const std::string pattern = "..AA...A..";
  json stats;
  const auto frames = run_filter_pipeline(
      pattern, "method=mqtt address=127.0.0.1:" + port + " topic=line2/pefm qos=1 source-id=cam1 drain-timeout=20000",
      &stats);
  ASSERT_EQ(frames.size(), pattern.size()) << "frames lost on the way";
  EXPECT_EQ(stats["dropped"], 0u) << stats;
  EXPECT_EQ(stats["sent"], stats["posted"]) << stats;  // each acknowledged by the broker
  // Acknowledged by the broker is not yet received by the subscriber: wait for the lines.
  const auto posted = stats["posted"].get<size_t>();
  const auto newlines = [&] {
    const std::string text = text_of(received);
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  };
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30 * pefm_test::kTimeoutScale);
  while (newlines() < posted && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  sub.stop();
  broker.stop();

  // QoS 1 is "at least once": a resent line would arrive twice, as the same text.
  std::set<std::string> seen;
  std::string unique;
  std::istringstream in(complete_lines(text_of(received)));
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && seen.insert(line).second) unique += line + "\n";
  const auto lines = json_lines(unique);
  EXPECT_EQ(lines.size(), posted) << text_of(received);
  expect_lines_match(lines, frames, "cam1");
}

// ---------------------------------------------------------------- TLS and a login

// A CA, a broker certificate for 127.0.0.1 and a client certificate signed by it, another
// CA nobody signed with, a password file for the broker (user "line", password in
// line.pw), all made by openssl and mosquitto_passwd in the test; and mosquitto requiring
// all that on 127.0.0.1: TLS, a client certificate from the CA, and the login.
class PublishTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!mqtt_built() || find_program("mosquitto").empty() || find_program("mosquitto_sub").empty() ||
        find_program("openssl").empty() || find_program("mosquitto_passwd").empty())
      return;
    dir_ = new pefm_test::TempDir();
    const auto sh = [](const std::string& script) {
      const auto r = pefm_test::run({"/bin/sh", "-c", "cd '" + dir_->path() + "' && " + script});
      if (r.status != 0) ADD_FAILURE() << script << "\n" << r.output;
      return r.status == 0;
    };
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    ready_ =
        sh("openssl req -x509 " + ec + " -keyout ca.key -out ca.crt -subj /CN=pefm-test-ca -days 2") &&
        sh("openssl req -x509 " + ec + " -keyout other.key -out other-ca.crt -subj /CN=pefm-test-ca -days 2") &&
        sh("openssl req " + ec + " -keyout broker.key -out broker.csr -subj /CN=127.0.0.1") &&
        sh("printf 'subjectAltName=IP:127.0.0.1\n' > san.ext && openssl x509 -req -in broker.csr -CA ca.crt "
           "-CAkey ca.key -CAcreateserial -out broker.crt -days 2 -extfile san.ext") &&
        sh("openssl req " + ec + " -keyout client.key -out client.csr -subj /CN=pefm-line && "
           "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 && "
           "chmod 600 client.key") &&
        sh("mosquitto_passwd -c -b passwd line 'l1ne secret' && chmod 600 passwd") &&
        sh("printf 'l1ne secret\n' > line.pw && chmod 600 line.pw && printf 'wrong\n' > wrong.pw && chmod 600 wrong.pw");
    if (!ready_) return;
    broker_ = new Broker(*dir_, "cafile " + file("ca.crt") + "\ncertfile " + file("broker.crt") + "\nkeyfile " +
                                    file("broker.key") + "\nrequire_certificate true\nallow_anonymous false\n"
                                    "password_file " + file("passwd") + "\n");
    ready_ = broker_->start();
    if (!ready_) ADD_FAILURE() << text_of(file("broker.log"));
  }
  static void TearDownTestSuite() {
    delete broker_;
    delete dir_;
    broker_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    PEFM_BROKER_OR_SKIP();
    if (find_program("openssl").empty() || find_program("mosquitto_passwd").empty())
      GTEST_SKIP() << "openssl or mosquitto_passwd not installed (Debian: openssl, mosquitto)";
    ASSERT_TRUE(ready_);
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static std::string address() { return "127.0.0.1:" + std::to_string(broker_->port()); }
  // pefmpublish's login and TLS properties, with this CA file (and the client certificate).
  static std::string secure(const std::string& ca = "ca.crt", const std::string& pw = "line.pw", bool cert = true) {
    return "method=mqtt address=" + address() + " tls-ca=" + file(ca) + " username=line password-file=" + file(pw) +
           (cert ? " tls-cert=" + file("client.crt") + " tls-key=" + file("client.key") : std::string());
  }
  // A subscriber to `filter` over TLS with the login, printing "TOPIC PAYLOAD" lines into
  // `out`; returns once the broker has its subscription.
  static std::unique_ptr<Child> subscribe(const std::string& filter, const std::string& id, const std::string& out) {
    auto sub = std::make_unique<Child>(
        std::vector<std::string>{find_program("mosquitto_sub"), "-h", "127.0.0.1", "-p", std::to_string(broker_->port()),
                                 "--cafile", file("ca.crt"), "--cert", file("client.crt"), "--key", file("client.key"),
                                 "-u", "line", "-P", "l1ne secret", "-t", filter, "-q", "1",
                                 "-v", "-i", id},
        out);
    EXPECT_TRUE(wait_for_text(file("broker.log"), "Sending SUBACK to " + id, 10)) << text_of(file("broker.log"));
    return sub;
  }

  static pefm_test::TempDir* dir_;
  static Broker* broker_;
  static bool ready_;
};
pefm_test::TempDir* PublishTls::dir_ = nullptr;
Broker* PublishTls::broker_ = nullptr;
bool PublishTls::ready_ = false;

// "TOPIC PAYLOAD" lines (mosquitto_sub -v) of `text`, finished ones only, each once (QoS 1
// may deliver twice): topic and parsed payload.
std::vector<std::pair<std::string, json>> topic_lines(const std::string& text) {
  std::vector<std::pair<std::string, json>> out;
  std::set<std::string> seen;
  std::istringstream in(complete_lines(text));
  for (std::string line; std::getline(in, line);) {
    const size_t space = line.find(' ');
    if (space == std::string::npos || !seen.insert(line).second) continue;
    out.emplace_back(line.substr(0, space), json::parse(line.substr(space + 1), nullptr, false));
  }
  return out;
}

// What a subscriber got: the statuses in order ("online:", "offline:REASON"), the topics
// each line type came on, and the payloads as JSON lines (for the schema).
struct Received {
  std::vector<std::string> statuses;
  std::map<std::string, std::set<std::string>> topics_of;
  std::string payloads;
};
Received received_lines(const std::string& text, const std::string& source) {
  Received r;
  for (const auto& [topic, line] : topic_lines(text)) {
    EXPECT_TRUE(line.is_object()) << topic;
    if (!line.is_object()) continue;
    const std::string type = line.at("type");
    r.topics_of[type].insert(topic);
    EXPECT_EQ(line.at("source"), source) << line;
    if (type == "status") r.statuses.push_back(line.at("status").get<std::string>() + ":" + line.value("reason", ""));
    r.payloads += line.dump() + "\n";
  }
  return r;
}

// The plant's setup: TLS checked against the plant's CA, a login, frame lines, events and
// a retained status on topics of their own; a pipeline that stops says "offline",
// "stopped" itself. Every line a subscriber gets is valid against the schema.
TEST_F(PublishTls, LinesReachTheirTopicsOverTlsWithALoginAndStoppingSaysOffline) {
  const std::string received = file("line3.txt");
  auto sub = subscribe("line3/#", "pefm-tls-sub", received);
  {
    Pipeline p(secure() + " topic=line3/pefm topic-events=line3/events source-id=cam3 drain-timeout=20000");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..AA..A..."), 10);
    auto messages = p.finish();
    release(messages);
    EXPECT_EQ(p.stats()["sent"], 14u) << p.stats();  // 10 frames, 2 defects' start and end
  }
  ASSERT_TRUE(wait_for_text(received, "\"reason\":\"stopped\"", 30)) << text_of(received);
  ASSERT_TRUE(wait_for_text(received, "\"frame\":9,", 30)) << text_of(received);
  sub->stop();
  const Received r = received_lines(text_of(received), "cam3");
  EXPECT_EQ(r.statuses, (std::vector<std::string>{"online:", "offline:stopped"}));
  EXPECT_EQ(r.topics_of.at("frame"), std::set<std::string>{"line3/pefm"});
  EXPECT_EQ(r.topics_of.at("defect-started"), std::set<std::string>{"line3/events"});
  EXPECT_EQ(r.topics_of.at("defect-ended"), std::set<std::string>{"line3/events"});
  EXPECT_EQ(r.topics_of.at("status"), std::set<std::string>{"line3/pefm/status"});
  // The status stays with the broker: a subscriber arriving later learns it at once.
  const std::string later = file("later3.txt");
  auto late = subscribe("line3/pefm/status", "pefm-tls-late", later);
  EXPECT_TRUE(wait_for_text(later, "\"reason\":\"stopped\"", 10)) << text_of(later);
  late->stop();

  PEFM_JSONSCHEMA_OR_SKIP();
  pefm_test::spit(file("line3.jsonl"), r.payloads);
  EXPECT_EQ(schema_check({file("line3.jsonl")}),
            json({{"defect-ended", 2}, {"defect-started", 2}, {"frame", 10}, {"status", 2}}));
}

// pefm killed (no goodbye: a crash, the OOM killer, a power cut of its PC): the broker
// sends the last will, "offline" with "connection lost", retained, to whoever listens.
// gst-launch-1.0 runs pefmfilter ! pefmpublish in a process of its own, killed with SIGKILL.
TEST_F(PublishTls, AKilledPipelineIsSaidOfflineByTheBrokersLastWill) {
  if (pefm_test::kSanitized) GTEST_SKIP() << "sanitizer build: the uninstrumented gst-launch-1.0 cannot load an ASan-built plugin";
  ASSERT_FALSE(find_program("gst-launch-1.0").empty());
  const std::string received = file("line4.txt");
  auto sub = subscribe("line4/#", "pefm-tls-will-sub", received);
  {
    Child pipeline(
        {find_program("gst-launch-1.0"), "videotestsrc", "is-live=true", "!",
         "video/x-raw,format=RGB,width=" + std::to_string(kFrameW) + ",height=" + std::to_string(kFrameH) +
             ",framerate=20/1", "!", "pefmfilter", "device=cpu", "model=" + filter_model(), "!", "pefmpublish",
         "method=mqtt", "address=" + address(), "tls-ca=" + file("ca.crt"), "tls-cert=" + file("client.crt"),
         "tls-key=" + file("client.key"), "username=line",
         "password-file=" + file("line.pw"), "topic=line4/pefm", "source-id=cam4", "!", "fakesink"},
        file("pipeline.log"));
    ASSERT_TRUE(wait_for_text(received, "\"frame\":5,", 60)) << text_of(file("pipeline.log")) << text_of(received);
    pipeline.kill_hard();
  }
  ASSERT_TRUE(wait_for_text(received, "\"reason\":\"connection lost\"", 30)) << text_of(received);
  sub->stop();
  const Received r = received_lines(text_of(received), "cam4");
  EXPECT_EQ(r.statuses, (std::vector<std::string>{"online:", "offline:connection lost"}));
  const std::string later = file("later4.txt");
  auto late = subscribe("line4/pefm/status", "pefm-tls-will-late", later);
  EXPECT_TRUE(wait_for_text(later, "\"reason\":\"connection lost\"", 10)) << text_of(later);
  late->stop();

  PEFM_JSONSCHEMA_OR_SKIP();
  pefm_test::spit(file("line4.jsonl"), r.payloads);
  const json counts = schema_check({file("line4.jsonl")});  // with pefmfilter's model and utc
  EXPECT_EQ(counts.value("status", 0), 2) << counts;
  EXPECT_GE(counts.value("frame", 0), 5) << counts;
}

// A wrong password, a missing client certificate and a broker whose certificate the CA did
// not sign are refused; each is said with the reason (the broker's, or OpenSSL's),
// retried, and costs no frame.
TEST_F(PublishTls, AWrongPasswordOrAnUntrustedBrokerIsSaidWithItsReason) {
  {
    Pipeline p(secure("ca.crt", "wrong.pw") + " drain-timeout=0");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..."), 3);
    const std::string said = p.wait_for_status("not authorised", 30);
    EXPECT_NE(said.find("connection failed: broker refused the connection: Connection Refused: not authorised"),
              std::string::npos) << said;
    auto messages = p.finish();
    release(messages);
  }
  {  // the broker asks for a client certificate: without one, no connection
    Pipeline p(secure("ca.crt", "line.pw", /*cert=*/false) + " drain-timeout=0");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..."), 3);
    const std::string said = p.wait_for_status("connection failed", 30);
    EXPECT_NE(said.find("connection failed"), std::string::npos) << said;
    EXPECT_EQ(said.find("connected to"), std::string::npos) << said;
    auto messages = p.finish();
    release(messages);
  }
  {
    Pipeline p(secure("other-ca.crt") + " drain-timeout=0");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..."), 3);
    const std::string said = p.wait_for_status("certificate verify failed", 30);
    EXPECT_NE(said.find("connection failed"), std::string::npos) << said;
    EXPECT_NE(said.find("certificate verify failed"), std::string::npos) << said;
    auto messages = p.finish();
    release(messages);
  }
  {  // and the right ones connect
    Pipeline p(secure() + " drain-timeout=5000");
    ASSERT_NE(p.play(), GST_STATE_CHANGE_FAILURE) << p.error();
    EXPECT_EQ(p.feed("..."), 3);
    const std::string said = p.wait_for_status("connected to", 30);
    EXPECT_NE(said.find("connected to " + address()), std::string::npos) << said;
    auto messages = p.finish();
    release(messages);
    EXPECT_EQ(p.stats()["dropped"], 0u) << p.stats();
  }
}

// Secrets and certificates are checked as the pipeline starts, each refusal naming the
// property: a password file others can read, a missing CA, a certificate without its key,
// a password without a user.
TEST(Publish, MqttSecretsAndCertificatesAreCheckedAtStartNamingTheProperty) {
  PEFM_MQTT_OR_SKIP();
  pefm_test::TempDir dir;
  const std::string pw = dir.file("pw"), open_pw = dir.file("open.pw"), empty_pw = dir.file("empty.pw");
  pefm_test::spit(pw, "secret\n");
  pefm_test::spit(open_pw, "secret\n");
  pefm_test::spit(empty_pw, "\nsecret\n");
  chmod(pw.c_str(), 0600);
  chmod(open_pw.c_str(), 0644);
  chmod(empty_pw.c_str(), 0600);
  const auto start_says = [](const std::string& props) {
    Pipeline p("method=mqtt address=127.0.0.1:1 " + props);
    EXPECT_EQ(p.play(), GST_STATE_CHANGE_FAILURE) << props;
    return p.error();
  };
  std::string e = start_says("username=line password-file=" + open_pw);
  EXPECT_NE(e.find("password-file '" + open_pw + "' can be read by every user"), std::string::npos) << e;
  e = start_says("username=line password-file=" + empty_pw);
  EXPECT_NE(e.find("password-file '" + empty_pw + "' holds no password"), std::string::npos) << e;
  e = start_says("username=line password-file=" + dir.file("none.pw"));
  EXPECT_NE(e.find("password-file '" + dir.file("none.pw") + "'"), std::string::npos) << e;
  e = start_says("password-file=" + pw);
  EXPECT_NE(e.find("password-file is set but username is not"), std::string::npos) << e;
  e = start_says("tls-ca=" + dir.file("ca.crt"));
  EXPECT_NE(e.find("tls-ca '" + dir.file("ca.crt") + "': No such file"), std::string::npos) << e;
  e = start_says("tls-ca=" + pw + " tls-cert=" + pw);
  EXPECT_NE(e.find("tls-cert and tls-key go together"), std::string::npos) << e;
  e = start_says("topic-events=line/#");
  EXPECT_NE(e.find("topic-events 'line/#' is not a valid MQTT topic"), std::string::npos) << e;
}

}  // namespace
