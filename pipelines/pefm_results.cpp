// pefm-results: runs a GStreamer pipeline that ends in `appsink name=results` and prints
// one JSON line per buffer from its GstPefmMeta. An example of embedding pefmfilter in an
// application; the pipeline scripts in this folder use it for results files.
//
//   pefm-results 'videotestsrc num-buffers=10 ! pefmfilter model=m.pt ! appsink name=results'
//   pefm-results --names files.txt 'multifilesrc ... ! appsink name=results' > results.jsonl
//
// --names FILE labels frame i with line i of FILE ("file" in the JSON).
#include <gst/app/gstappsink.h>
#include <gst/gst.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "pefmjson.h"

namespace {

// One result line: frame index, PTS (null when unset), the file name when --names gave
// one, then the GstPefmMeta with pefmpublish's field names (gst-plugin/pefmjson.h).
std::string json_line(GstSample* sample, guint64 index, const std::vector<std::string>& names) {
  GstBuffer* buf = gst_sample_get_buffer(sample);
  pefm::Json line = {{"frame", index}, {"pts", pefm::json_time(GST_BUFFER_PTS(buf))}};
  if (index < names.size()) line["file"] = names[index];
  pefm::add_meta_json(&line, gst_buffer_get_pefm_meta(buf));
  return pefm::json_text(line);
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  std::vector<std::string> names;
  std::string description;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << "Usage: pefm-results [--names FILE] 'PIPELINE ... ! appsink name=results'\n"
                   "Prints one JSON line per buffer reaching the appsink, from its GstPefmMeta.\n";
      return 0;
    }
    if (arg == "--names" && i + 1 < argc) {
      std::ifstream in(argv[++i]);
      if (!in) {
        std::cerr << "pefm-results: cannot read names file '" << argv[i] << "'\n";
        return 2;
      }
      for (std::string n; std::getline(in, n);) names.push_back(n);
    } else {
      description += (description.empty() ? "" : " ") + arg;
    }
  }
  if (description.empty()) {
    std::cerr << "pefm-results: give a pipeline ending in 'appsink name=results' (see --help)\n";
    return 2;
  }
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(description.c_str(), &err);
  if (!pipeline || err) {
    std::cerr << "pefm-results: bad pipeline: " << (err ? err->message : "unknown") << "\n";
    g_clear_error(&err);
    return 2;
  }
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "results");
  if (!sink || !GST_IS_APP_SINK(sink)) {
    std::cerr << "pefm-results: the pipeline has no 'appsink name=results'\n";
    return 2;
  }
  g_object_set(sink, "sync", FALSE, nullptr);
  if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The bus holds the reason (e.g. a model that failed to load).
  }
  guint64 index = 0;
  while (GstSample* sample = gst_app_sink_pull_sample(GST_APP_SINK(sink))) {
    std::cout << json_line(sample, index++, names) << "\n" << std::flush;
    gst_sample_unref(sample);
  }
  // The appsink is done, but other branches (file writers) may still be flushing: wait
  // for the pipeline's own EOS (or an error) before tearing it down.
  int status = 0;
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 60 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    gst_message_unref(msg);
    msg = nullptr;
  }
  if (msg) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    std::cerr << "pefm-results: " << GST_OBJECT_NAME(msg->src) << ": " << e->message << (dbg ? "\n  " : "")
              << (dbg ? dbg : "") << "\n";
    g_clear_error(&e);
    g_free(dbg);
    gst_message_unref(msg);
    status = 1;
  }
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(sink);
  gst_object_unref(pipeline);
  std::cerr << "pefm-results: " << index << " frames\n";
  return status;
}
