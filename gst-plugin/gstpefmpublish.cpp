/**
 * SECTION:element-pefmpublish
 * @title: pefmpublish
 *
 * Sends the results pefmfilter attached to each frame (#GstPefmMeta) as JSON lines to
 * stdout, a file, or an MQTT broker, and passes the frames on untouched. Besides one line
 * per frame (`"type": "frame"`: frame, pts, running and stream time, source, decision,
 * scores, boxes; the field names of pefm-results), it sends edge-triggered events, so that
 * a PLC reacts once per defect rather than once per frame: `"defect-started"` on the first
 * anomalous frame, `"defect-ended"` after #GstPefmPublish:end-frames normal frames (or at
 * EOS, a flush or a new stream) with the defect's first and last frame, its frame count and
 * its peak score. Behind pefmfilter continuous=true (line-scan webs) it also sends one
 * `"web-region"` line per region, once, with the buffer where it ends: `"region"` holds its
 * extent on the web (web_y, web_height, web_x, web_width, closed_by, and the millimetres
 * when pefmfilter pixels-per-mm is set), `"web_row"` the buffer's first row.
 *
 * Every line also says when (`"utc"`, from the source's reference timestamp, else the
 * capture on the pipeline clock for live sources, else the system clock; `"utc_source"`
 * says which), by which model (`"model"`: file name and SHA-256) and from which source (the
 * camera or file the pipeline reads, unless #GstPefmPublish:source-id names it). The lines
 * are described by docs/results.schema.json. Over MQTT it speaks TLS (#GstPefmPublish:tls-ca)
 * with a login (#GstPefmPublish:username, #GstPefmPublish:password-file), sends the events
 * to #GstPefmPublish:topic-events if set, and keeps a retained `"status"` line on
 * #GstPefmPublish:topic-status: online, offline when stopped, and offline as MQTT's last
 * will when the connection is lost without a goodbye.
 *
 * It never blocks the pipeline. Lines wait in a bounded queue (#GstPefmPublish:max-buffered)
 * for a worker thread; a broker that is down, refuses or goes away is retried with
 * exponential backoff; when the queue is full the oldest frame lines are dropped (events
 * last) and counted. The element says so: a warning on the bus for a lost connection and for
 * the first drop of a run, a `pefm-publish` element message for every change (status, sent,
 * dropped, buffered, connected), and the #GstPefmPublish:stats property. At EOS it holds the
 * EOS until the queue is sent (up to #GstPefmPublish:drain-timeout) and warns with the count
 * of lines lost before the EOS goes on, so that gst-launch still shows it.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 filesrc location=line.mp4 ! decodebin ! videoconvert ! \
 *   pefmfilter model=cable.pt ! pefmpublish method=mqtt address=127.0.0.1:1883 topic=line1/pefm ! fakesink
 * ]| Publishes every frame's result and each defect's start and end to the topic line1/pefm.
 * |[
 * gst-launch-1.0 ... ! pefmfilter model=cable.pt ! pefmpublish method=file location=results.jsonl frames=anomalous ! ...
 * ]| Writes the anomalous frames and the defect events to a file.
 */
#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include "gstpefmpublish.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "gstpefmmeta.h"
#include "pefm/file_util.h"
#include "pefmjson.h"
#include "pefmpublisher.h"

GST_DEBUG_CATEGORY_STATIC (gst_pefm_publish_debug);
#define GST_CAT_DEFAULT gst_pefm_publish_debug

typedef enum {
  GST_PEFM_PUBLISH_STDOUT,
  GST_PEFM_PUBLISH_FILE,
  GST_PEFM_PUBLISH_MQTT,
} GstPefmPublishMethod;

typedef enum {
  GST_PEFM_PUBLISH_FRAMES_ALL,
  GST_PEFM_PUBLISH_FRAMES_ANOMALOUS,
  GST_PEFM_PUBLISH_FRAMES_NONE,
} GstPefmPublishFrames;

#define DEFAULT_METHOD GST_PEFM_PUBLISH_STDOUT
#define DEFAULT_ADDRESS "localhost"
#define DEFAULT_TOPIC "pefm/results"
#define DEFAULT_QOS 1
#define DEFAULT_FRAMES GST_PEFM_PUBLISH_FRAMES_ALL
#define DEFAULT_END_FRAMES 1
#define DEFAULT_MAX_BUFFERED 1000
#define DEFAULT_DRAIN_TIMEOUT 3000

enum
{
  PROP_0,
  PROP_METHOD,
  PROP_LOCATION,
  PROP_ADDRESS,
  PROP_TOPIC,
  PROP_QOS,
  PROP_CLIENT_ID,
  PROP_SOURCE_ID,
  PROP_FRAMES,
  PROP_END_FRAMES,
  PROP_MAX_BUFFERED,
  PROP_DRAIN_TIMEOUT,
  PROP_APPEND,
  PROP_STATS,
  PROP_TOPIC_EVENTS,
  PROP_TOPIC_STATUS,
  PROP_TLS_CA,
  PROP_TLS_CERT,
  PROP_TLS_KEY,
  PROP_USERNAME,
  PROP_PASSWORD_FILE,
};

/* One defect being followed across frames (streaming thread only). */
struct DefectTrack {
  bool active = false;
  guint64 first_frame = 0, last_frame = 0, frames = 0;
  GstClockTime first_pts = GST_CLOCK_TIME_NONE, first_running_time = GST_CLOCK_TIME_NONE;
  pefm::Json first_utc;
  double peak_score = 0;
  guint normal_run = 0;
};

/* What exists from start() to stop(). */
struct PublishRun {
  std::unique_ptr < pefm::Publisher > publisher;
  std::string source;           /* source-id, else the camera, else the stream-id */
  bool named = false;           /* source-id set */
  pefm::Json model;             /* the last meta's model (name, sha256), null before one */
  int live = -1;                /* whether upstream is live (-1: not asked yet) */
  /* the wall-clock time of the buffer being handled, and where it came from */
  std::string utc;
  const char *utc_source = "arrival";
  GstPefmPublishFrames frames = DEFAULT_FRAMES;
  guint end_frames = DEFAULT_END_FRAMES;
  guint64 frame = 0;            /* buffers seen */
  DefectTrack defect;
  std::string location;         /* method=file: the results file */
  /* what the last EOS warning said: dropped, still waiting, out of posted */
  guint64 warned_dropped = 0, warned_waiting = 0, warned_posted = 0;
};

struct _GstPefmPublish
{
  GstBaseTransform parent;

  /* properties, under the object lock */
  GstPefmPublishMethod method;
  gchar *location;
  gboolean append;
  gchar *address;
  gchar *topic;
  gint qos;
  gchar *client_id;
  gchar *source_id;
  gchar *topic_events;
  gchar *topic_status;
  gchar *tls_ca, *tls_cert, *tls_key;
  gchar *username;
  gchar *password_file;
  GstPefmPublishFrames frames;
  guint end_frames;
  guint max_buffered;
  guint drain_timeout;

  /* start() .. stop(); the pointer under the object lock */
  PublishRun *run;
  /* the last run's counts, for the stats property after stop() */
  pefm::PublisherStats last_stats;
};

static GType
gst_pefm_publish_method_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_PEFM_PUBLISH_STDOUT, "Standard output", "stdout"},
    {GST_PEFM_PUBLISH_FILE, "A file (location), one JSON line each", "file"},
    {GST_PEFM_PUBLISH_MQTT, "An MQTT broker (address, topic, qos, client-id, TLS, login)", "mqtt"},
    {0, NULL, NULL},
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstPefmPublishMethod", values));
  return type;
}

static GType
gst_pefm_publish_frames_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_PEFM_PUBLISH_FRAMES_ALL, "A line for every frame", "all"},
    {GST_PEFM_PUBLISH_FRAMES_ANOMALOUS, "Lines for anomalous frames only", "anomalous"},
    {GST_PEFM_PUBLISH_FRAMES_NONE, "No frame lines: the defect events only", "none"},
    {0, NULL, NULL},
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstPefmPublishFrames", values));
  return type;
}

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

#define gst_pefm_publish_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstPefmPublish, gst_pefm_publish, GST_TYPE_BASE_TRANSFORM,
    GST_DEBUG_CATEGORY_INIT (gst_pefm_publish_debug, "pefmpublish", 0, "PEFM result publisher"));
GST_ELEMENT_REGISTER_DEFINE (pefmpublish, "pefmpublish", GST_RANK_NONE, GST_TYPE_PEFM_PUBLISH);

static void
gst_pefm_publish_set_property (GObject * object, guint prop_id, const GValue * value, GParamSpec * pspec)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD: self->method = (GstPefmPublishMethod) g_value_get_enum (value); break;
    case PROP_LOCATION: g_free (self->location); self->location = g_value_dup_string (value); break;
    case PROP_ADDRESS: g_free (self->address); self->address = g_value_dup_string (value); break;
    case PROP_TOPIC: g_free (self->topic); self->topic = g_value_dup_string (value); break;
    case PROP_QOS: self->qos = g_value_get_int (value); break;
    case PROP_CLIENT_ID: g_free (self->client_id); self->client_id = g_value_dup_string (value); break;
    case PROP_SOURCE_ID: g_free (self->source_id); self->source_id = g_value_dup_string (value); break;
    case PROP_FRAMES: self->frames = (GstPefmPublishFrames) g_value_get_enum (value); break;
    case PROP_END_FRAMES: self->end_frames = g_value_get_uint (value); break;
    case PROP_MAX_BUFFERED: self->max_buffered = g_value_get_uint (value); break;
    case PROP_DRAIN_TIMEOUT: self->drain_timeout = g_value_get_uint (value); break;
    case PROP_APPEND: self->append = g_value_get_boolean (value); break;
    case PROP_TOPIC_EVENTS: g_free (self->topic_events); self->topic_events = g_value_dup_string (value); break;
    case PROP_TOPIC_STATUS: g_free (self->topic_status); self->topic_status = g_value_dup_string (value); break;
    case PROP_TLS_CA: g_free (self->tls_ca); self->tls_ca = g_value_dup_string (value); break;
    case PROP_TLS_CERT: g_free (self->tls_cert); self->tls_cert = g_value_dup_string (value); break;
    case PROP_TLS_KEY: g_free (self->tls_key); self->tls_key = g_value_dup_string (value); break;
    case PROP_USERNAME: g_free (self->username); self->username = g_value_dup_string (value); break;
    case PROP_PASSWORD_FILE: g_free (self->password_file); self->password_file = g_value_dup_string (value); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static GstStructure *
stats_structure (const pefm::PublisherStats & s)
{
  return gst_structure_new ("pefm-publish-stats",
      "posted", G_TYPE_UINT64, s.posted, "sent", G_TYPE_UINT64, s.sent,
      "dropped", G_TYPE_UINT64, s.dropped, "buffered", G_TYPE_UINT64, s.buffered,
      "connects", G_TYPE_UINT64, s.connects, "connected", G_TYPE_BOOLEAN, s.connected,
      "last-error", G_TYPE_STRING, s.last_error.c_str (), NULL);
}

static void
gst_pefm_publish_get_property (GObject * object, guint prop_id, GValue * value, GParamSpec * pspec)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD: g_value_set_enum (value, self->method); break;
    case PROP_LOCATION: g_value_set_string (value, self->location); break;
    case PROP_ADDRESS: g_value_set_string (value, self->address); break;
    case PROP_TOPIC: g_value_set_string (value, self->topic); break;
    case PROP_QOS: g_value_set_int (value, self->qos); break;
    case PROP_CLIENT_ID: g_value_set_string (value, self->client_id); break;
    case PROP_SOURCE_ID: g_value_set_string (value, self->source_id); break;
    case PROP_FRAMES: g_value_set_enum (value, self->frames); break;
    case PROP_END_FRAMES: g_value_set_uint (value, self->end_frames); break;
    case PROP_MAX_BUFFERED: g_value_set_uint (value, self->max_buffered); break;
    case PROP_DRAIN_TIMEOUT: g_value_set_uint (value, self->drain_timeout); break;
    case PROP_APPEND: g_value_set_boolean (value, self->append); break;
    case PROP_TOPIC_EVENTS: g_value_set_string (value, self->topic_events); break;
    case PROP_TOPIC_STATUS: g_value_set_string (value, self->topic_status); break;
    case PROP_TLS_CA: g_value_set_string (value, self->tls_ca); break;
    case PROP_TLS_CERT: g_value_set_string (value, self->tls_cert); break;
    case PROP_TLS_KEY: g_value_set_string (value, self->tls_key); break;
    case PROP_USERNAME: g_value_set_string (value, self->username); break;
    case PROP_PASSWORD_FILE: g_value_set_string (value, self->password_file); break;
    case PROP_STATS:
      g_value_take_boxed (value, stats_structure (self->run ? self->run->publisher->stats () : self->last_stats));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* From the publisher's worker (or the streaming thread, for a drop): says what changed. */
static void
report (GstPefmPublish * self, const std::string & what, const pefm::PublisherStats & stats)
{
  GST_INFO_OBJECT (self, "%s (sent %" G_GUINT64_FORMAT ", dropped %" G_GUINT64_FORMAT ", buffered %"
      G_GUINT64_FORMAT ")", what.c_str (), stats.sent, stats.dropped, stats.buffered);
  if (what.rfind ("disconnected", 0) == 0 || what.rfind ("dropping", 0) == 0 || what.rfind ("write failed", 0) == 0)
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE, ("pefmpublish: %s", what.c_str ()), (NULL));
  GstStructure *s = stats_structure (stats);
  gst_structure_set_name (s, "pefm-publish");
  gst_structure_set (s, "status", G_TYPE_STRING, what.c_str (), NULL);
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

static std::string
default_client_id (GstPefmPublish * self)
{
  char host[64] = "pefm";
  gethostname (host, sizeof host - 1);
  gchar *name = gst_object_get_name (GST_OBJECT (self));
  std::string id = std::string ("pefm-") + host + "-" + std::to_string (getpid ()) + "-" + (name ? name : "");
  g_free (name);
  return id;
}

static void end_defect (GstBaseTransform * trans, PublishRun & run, const char *reason);

/* Every element of the pipeline @self is in, but itself, each with a reference. */
static std::vector < GstElement * >
pipeline_elements (GstPefmPublish * self)
{
  std::vector < GstElement * >elements;
  GstObject *top = GST_OBJECT (gst_object_ref (self));
  while (GstObject * parent = gst_object_get_parent (top)) {
    gst_object_unref (top);
    top = parent;
  }
  if (GST_IS_BIN (top)) {
    GstIterator *it = gst_bin_iterate_recurse (GST_BIN (top));
    GValue item = G_VALUE_INIT;
    for (bool done = false; !done;) {
      switch (gst_iterator_next (it, &item)) {
        case GST_ITERATOR_OK:{
          GstElement *e = GST_ELEMENT (g_value_get_object (&item));
          if (e != GST_ELEMENT (self))
            elements.push_back (GST_ELEMENT (gst_object_ref (e)));
          g_value_reset (&item);
          break;
        }
        case GST_ITERATOR_RESYNC:  /* the bin changed while we looked: look again */
          gst_iterator_resync (it);
          for (GstElement * e:elements)
            gst_object_unref (e);
          elements.clear ();
          break;
        default:
          done = true;
          break;
      }
    }
    g_value_unset (&item);
    gst_iterator_free (it);
  }
  gst_object_unref (top);
  return elements;
}

/* @e's string property @name, "" when it has none or it is unset. */
static std::string
string_property (GstElement * e, const char *name)
{
  GParamSpec *spec = g_object_class_find_property (G_OBJECT_GET_CLASS (e), name);
  if (!spec || spec->value_type != G_TYPE_STRING || !(spec->flags & G_PARAM_READABLE))
    return "";
  gchar *value = NULL;
  g_object_get (e, name, &value, NULL);
  std::string out = value ? value : "";
  g_free (value);
  return out;
}

/* The files the other elements of this pipeline name (a filesrc's or filesink's location,
 * a pefmfilter's model): method=file never writes over one of them. */
static std::vector < std::string >
pipeline_files (GstPefmPublish * self)
{
  std::vector < std::string > files;
  for (GstElement * e:pipeline_elements (self)) {
    for (const char *name : {"location", "model"}) {
      const std::string value = string_property (e, name);
      if (!value.empty ())
        files.push_back (value);
    }
    gst_object_unref (e);
  }
  return files;
}

/* @url without the secrets it may carry: a user and password ("rtsp://user:pw@host/x",
 * also with an unencoded '/' or '@' in the password: up to the last '@') and the query
 * and fragment, where some cameras take a password or a token. */
static std::string
without_login (const std::string & url)
{
  const size_t scheme = url.find ("://");
  if (scheme == std::string::npos)
    return url;
  const size_t host = scheme + 3;
  std::string out = url.substr (0, url.find_first_of ("?#", host));
  const size_t at = out.rfind ('@');
  if (at != std::string::npos && at >= host)
    out = out.substr (0, host) + out.substr (at + 1);
  return out;
}

/* What names the camera: the pipeline's one source element that says where it reads, by
 * camera-name (aravissrc), device (v4l2src) or location (rtspsrc, filesrc), as
 * "FACTORY:VALUE" with any login taken out of a URL; "" when there is none, or several. */
static std::string
camera_name (GstPefmPublish * self)
{
  std::vector < std::string > found;
  for (GstElement * e:pipeline_elements (self)) {
    if (GST_OBJECT_FLAG_IS_SET (e, GST_ELEMENT_FLAG_SOURCE)) {
      for (const char *name : {"camera-name", "device", "location"}) {
        const std::string value = string_property (e, name);
        if (value.empty ())
          continue;
        GstElementFactory *factory = gst_element_get_factory (e);
        found.push_back (std::string (factory ? GST_OBJECT_NAME (factory) : G_OBJECT_TYPE_NAME (e)) + ":" +
            without_login (value));
        break;
      }
    }
    gst_object_unref (e);
  }
  return found.size () == 1 ? found[0] : "";
}

/* Nanoseconds since 1970 as ISO 8601 UTC to the microsecond, "2026-12-05T15:04:05.123456Z". */
static std::string
iso_utc (gint64 unix_ns)
{
  gint64 us = unix_ns / 1000;
  time_t seconds = static_cast < time_t > (us / 1000000);
  gint64 fraction = us % 1000000;
  if (fraction < 0) {
    fraction += 1000000;
    seconds--;
  }
  struct tm tm;
  char text[64];
  if (!gmtime_r (&seconds, &tm) || !strftime (text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm))
    return "";
  char fraction_text[16];
  g_snprintf (fraction_text, sizeof fraction_text, ".%06" G_GINT64_FORMAT "Z", fraction);
  return std::string (text) + fraction_text;
}

/* The wall-clock time of @buf, and where it came from: a reference timestamp the source
 * attached (timestamp/x-unix, or timestamp/x-ntp as rtspsrc's from RTCP), else for a live
 * source the system clock at capture (now, less the frame's age on the pipeline clock),
 * else (files, non-live sources: there is no capture) the system clock on arrival here. */
static void
stamp_buffer (GstBaseTransform * trans, PublishRun & run, GstBuffer * buf)
{
  static GstStaticCaps unix_caps = GST_STATIC_CAPS ("timestamp/x-unix");
  static GstStaticCaps ntp_caps = GST_STATIC_CAPS ("timestamp/x-ntp");
  for (GstStaticCaps * reference : {&unix_caps, &ntp_caps}) {
    GstCaps *caps = gst_static_caps_get (reference);
    GstReferenceTimestampMeta *meta = gst_buffer_get_reference_timestamp_meta (buf, caps);
    gst_caps_unref (caps);
    if (!meta || !GST_CLOCK_TIME_IS_VALID (meta->timestamp))
      continue;
    /* NTP counts from 1900 */
    const guint64 from_1900 = G_GUINT64_CONSTANT (2208988800) * GST_SECOND;
    if (reference == &ntp_caps && meta->timestamp < from_1900)
      continue;
    run.utc = iso_utc (static_cast < gint64 > (reference == &ntp_caps ? meta->timestamp - from_1900 :
            meta->timestamp));
    run.utc_source = reference == &ntp_caps ? "reference:timestamp/x-ntp" : "reference:timestamp/x-unix";
    return;
  }
  if (run.live < 0) {
    GstQuery *q = gst_query_new_latency ();
    gboolean live = FALSE;
    if (gst_pad_peer_query (trans->sinkpad, q))
      gst_query_parse_latency (q, &live, NULL, NULL);
    gst_query_unref (q);
    run.live = live ? 1 : 0;
  }
  const GstClockTime pts = GST_BUFFER_PTS (buf);
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (trans));
  if (run.live == 1 && clock && GST_CLOCK_TIME_IS_VALID (pts) && trans->segment.format == GST_FORMAT_TIME) {
    const GstClockTime running = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, pts);
    if (GST_CLOCK_TIME_IS_VALID (running)) {
      const GstClockTime captured = gst_element_get_base_time (GST_ELEMENT (trans)) + running;
      const GstClockTimeDiff age = GST_CLOCK_DIFF (captured, gst_clock_get_time (clock));
      const gint64 now_ns = g_get_real_time () * 1000;
      /* a time stamp not on the pipeline clock (a frame from the future, or minutes old)
       * is no capture time: said as arrival rather than stated wrongly */
      if (age > -GST_SECOND && age < 60 * GST_SECOND) {
        gst_object_unref (clock);
        run.utc = iso_utc (now_ns - age);
        run.utc_source = "capture";
        return;
      }
    }
  }
  if (clock)
    gst_object_unref (clock);
  run.utc = iso_utc (g_get_real_time () * 1000);
  run.utc_source = "arrival";
}

/* The password in @path: its first line, without the newline. The file must be a regular
 * file that not every user may read (checked on the file opened, not on its name).
 * Throws naming the file. */
static std::string
read_password_file (const std::string & path)
{
  const auto fail = [&path](const std::string & why) {
    throw std::runtime_error ("password-file '" + path + "' " + why);
  };
  const int fd = open (path.c_str (), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    fail (std::string ("cannot be read: ") + g_strerror (errno));
  struct stat st;
  std::string password;
  const char *refused = NULL;
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    refused = "is not a file";
  else if (st.st_mode & S_IROTH)
    refused = "can be read by every user: make it private (chmod o-rwx)";
  else if (st.st_size > 65535)
    refused = "is larger than an MQTT password can be (65535 bytes)";
  char chunk[4096];
  for (ssize_t n; !refused && (n = read (fd, chunk, sizeof chunk)) != 0;) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      refused = "cannot be read";
    else
      password.append (chunk, static_cast < size_t > (n));
  }
  close (fd);
  if (refused)
    fail (refused);
  password = password.substr (0, password.find ('\n'));
  if (!password.empty () && password.back () == '\r')
    password.pop_back ();
  if (password.empty ())
    fail ("holds no password (its first line is empty)");
  return password;
}

/* The results files pefmpublish finished in this process, as it left them: a later run on
 * one of them (the pipeline played again) adds to it rather than replacing what the run
 * before wrote. A file changed since is someone else's again. */
static std::mutex written_lock;
static std::set < std::string > written;

static gboolean
gst_pefm_publish_start (GstBaseTransform * trans)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (trans);
  pefm::PublisherOptions o;
  auto run = std::make_unique < PublishRun > ();
  std::string address;

  GST_OBJECT_LOCK (self);
  o.method = self->method == GST_PEFM_PUBLISH_FILE ? pefm::PublishMethod::kFile :
      self->method == GST_PEFM_PUBLISH_MQTT ? pefm::PublishMethod::kMqtt : pefm::PublishMethod::kStdout;
  o.location = self->location ? self->location : "";
  o.append = self->append;
  address = self->address ? self->address : "";
  o.topic = self->topic ? self->topic : "";
  o.qos = self->qos;
  o.client_id = self->client_id ? self->client_id : "";
  o.max_buffered = self->max_buffered;
  o.drain_timeout_ms = static_cast < int >(self->drain_timeout);
  run->source = self->source_id ? self->source_id : "";
  run->named = self->source_id != NULL;
  run->frames = self->frames;
  run->end_frames = MAX (self->end_frames, 1u);
  o.topic_events = self->topic_events ? self->topic_events : "";
  /* unset: TOPIC/status; set to "": no status */
  o.topic_status = self->topic_status ? self->topic_status : o.topic + "/status";
  o.tls_ca = self->tls_ca ? self->tls_ca : "";
  o.tls_cert = self->tls_cert ? self->tls_cert : "";
  o.tls_key = self->tls_key ? self->tls_key : "";
  o.username = self->username ? self->username : "";
  const std::string password_file = self->password_file ? self->password_file : "";
  GST_OBJECT_UNLOCK (self);
  if (!run->named)
    run->source = camera_name (self);   /* the stream-id, at stream-start, if none */

  bool restarted = false;
  if (o.method == pefm::PublishMethod::kFile) {
    o.inputs = pipeline_files (self);
    std::lock_guard < std::mutex > lock (written_lock);
    const std::string id = pefm::file_identity (o.location);
    restarted = !o.append && !id.empty () && written.count (id) > 0;
    o.append = o.append || restarted;
  }
  if (o.method == pefm::PublishMethod::kMqtt) {
    /* MQTT over TLS listens on 8883 */
    if (!pefm::parse_mqtt_address (address, &o.host, &o.port, o.tls_ca.empty ()? 1883 : 8883)) {
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("Invalid address \"%s\"", address.c_str ()),
          ("property 'address': expected HOST:PORT, HOST, or [IPv6]:PORT"));
      return FALSE;
    }
    if (o.client_id.empty ())
      o.client_id = default_client_id (self);
    if (!password_file.empty ()) {
      try {
        o.password = read_password_file (password_file);
      } catch (const std::exception & e) {
        GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("%s", e.what ()), ("property 'password-file'"));
        return FALSE;
      }
    }
    /* fixed at start: the will is made on the worker thread, before each connection */
    o.status_line =[source = run->source, client = o.client_id] (const std::string & status,
        const std::string & reason) {
      pefm::Json line {
        {"type", "status"}, {"status", status}, {"source", source}, {"client_id", client},
        {"utc", iso_utc (g_get_real_time () * 1000)}};
      if (!reason.empty ())
        line["reason"] = reason;
      return pefm::json_text (line);
    };
  }
  try {
    run->publisher = std::make_unique < pefm::Publisher > (o,
        [self](const std::string & what, const pefm::PublisherStats & stats) { report (self, what, stats); });
  } catch (const std::exception & e) {
    if (o.method == pefm::PublishMethod::kFile)
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE, ("%s", e.what ()), ("property 'location'"));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("%s", e.what ()), ("method %s", o.method ==
              pefm::PublishMethod::kMqtt ? "mqtt" : "stdout"));
    return FALSE;
  }
  if (o.method == pefm::PublishMethod::kFile)
    run->location = o.location;
  if (restarted)
    GST_ELEMENT_INFO (self, RESOURCE, OPEN_WRITE, ("Appending to '%s'", o.location.c_str ()),
        ("pefmpublish wrote it earlier in this process: the lines of this run follow (frame numbers start at 0 "
            "again); set another location for a file of its own"));
  GST_OBJECT_LOCK (self);
  self->run = run.release ();
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* The warning of lost lines, at EOS and at stop: dropped of posted, then `tail`. */
static void
warn_lost (GstPefmPublish * self, const pefm::PublisherStats & stats, const std::string & tail)
{
  GST_ELEMENT_WARNING (self, RESOURCE, WRITE, ("pefmpublish dropped %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
          " lines%s", stats.dropped, stats.posted, tail.c_str ()), ("last error: %s", stats.last_error.c_str ()));
}

static gboolean
gst_pefm_publish_stop (GstBaseTransform * trans)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (trans);

  GST_OBJECT_LOCK (self);
  std::unique_ptr < PublishRun > run (self->run);
  self->run = NULL;
  GST_OBJECT_UNLOCK (self);
  if (!run)
    return TRUE;
  /* stopped without EOS (a state change, Ctrl-C): a PLC still learns the defect ended */
  end_defect (trans, *run, "stop");
  run->publisher->close ();     /* sends what it can within drain-timeout */
  const pefm::PublisherStats stats = run->publisher->stats ();
  run->publisher.reset ();      /* closes the file */
  if (!run->location.empty () && stats.sent > 0) {
    std::lock_guard < std::mutex > lock (written_lock);
    written.insert (pefm::file_identity (run->location));
  }
  GST_OBJECT_LOCK (self);
  self->last_stats = stats;
  GST_OBJECT_UNLOCK (self);
  /* the lines waiting at that EOS were said to be lost unless sent; if nothing was posted
   * since, those dropped at close() were already said */
  const guint64 said = run->warned_dropped + (stats.posted == run->warned_posted ? run->warned_waiting : 0);
  if (stats.dropped > said)
    warn_lost (self, stats, "");
  return TRUE;
}

/* At EOS, before it goes on: the lines queued so far are sent (up to drain-timeout), and
 * what was lost is warned about while the application still reads the bus; gst-launch
 * stops reading it at the EOS message, before the element stops. */
static void
drain_at_eos (GstBaseTransform * trans, PublishRun & run)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (trans);
  GST_OBJECT_LOCK (self);
  const guint timeout = self->drain_timeout;
  GST_OBJECT_UNLOCK (self);
  /* in slices, so that a flushing seek or a state change (both set the pad flushing
   * first) does not wait for the whole drain-timeout */
  const gint64 deadline = g_get_monotonic_time () + (gint64) timeout * 1000;
  for (;;) {
    const gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
    if (run.publisher->flush (static_cast < int >(CLAMP (left_ms, 0, 50))) || left_ms <= 0
        || GST_PAD_IS_FLUSHING (trans->sinkpad))
      break;
  }
  const pefm::PublisherStats stats = run.publisher->stats ();
  if (stats.dropped <= run.warned_dropped && stats.buffered == 0)
    return;
  run.warned_dropped = stats.dropped;
  run.warned_waiting = stats.buffered;
  run.warned_posted = stats.posted;
  std::string tail = " by the end of the stream";
  if (stats.buffered > 0)
    tail += "; " + std::to_string (stats.buffered) + " more still waiting after drain-timeout (" +
        std::to_string (timeout) + " ms)";
  warn_lost (self, stats, tail);
}

/* The fields every line starts with. */
static pefm::Json
line_head (GstBaseTransform * trans, const PublishRun & run, const char *type, guint64 frame, GstClockTime pts)
{
  GstClockTime running = GST_CLOCK_TIME_NONE, stream = GST_CLOCK_TIME_NONE;
  if (GST_CLOCK_TIME_IS_VALID (pts) && trans->segment.format == GST_FORMAT_TIME) {
    running = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, pts);
    stream = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME, pts);
  }
  return pefm::Json {
    {"type", type}, {"source", run.source}, {"frame", frame}, {"pts", pefm::json_time (pts)},
    {"running_time", pefm::json_time (running)}, {"stream_time", pefm::json_time (stream)},
    {"utc", run.utc}, {"utc_source", run.utc_source}, {"model", run.model}};
}

static void
end_defect (GstBaseTransform * trans, PublishRun & run, const char *reason)
{
  DefectTrack & d = run.defect;
  if (!d.active)
    return;
  if (strcmp (reason, "normal") != 0) {       /* ended by an event, not by a frame: now */
    run.utc = iso_utc (g_get_real_time () * 1000);
    run.utc_source = "arrival";
  }
  pefm::Json line = line_head (trans, run, "defect-ended", d.last_frame, GST_CLOCK_TIME_NONE);
  line["reason"] = reason;
  line["first_frame"] = d.first_frame;
  line["last_frame"] = d.last_frame;
  line["frames"] = d.frames;
  line["first_pts"] = pefm::json_time (d.first_pts);
  line["first_running_time"] = pefm::json_time (d.first_running_time);
  line["first_utc"] = d.first_utc;
  line["peak_score"] = pefm::json_rounded (d.peak_score);
  run.publisher->post (pefm::json_text (line), true);
  d = DefectTrack ();
}

/* Edge-triggered defect events from one frame's decision. */
static void
follow_defect (GstBaseTransform * trans, PublishRun & run, const GstPefmMeta * m, GstClockTime pts,
    const pefm::Json & head)
{
  DefectTrack & d = run.defect;
  if (!m || !m->inspected)
    return;                     /* an uninspected frame neither starts nor ends a defect */
  if (m->anomalous) {
    d.normal_run = 0;
    if (!d.active) {
      d.active = true;
      d.first_frame = run.frame;
      d.first_pts = pts;
      d.first_running_time = head["running_time"].is_null ()? GST_CLOCK_TIME_NONE :
          head["running_time"].get < guint64 > ();
      d.peak_score = m->score;
      d.first_utc = head["utc"];
      pefm::Json line = head;
      line["type"] = "defect-started";
      pefm::add_meta_json (&line, m);
      run.publisher->post (pefm::json_text (line), true);
    }
    d.last_frame = run.frame;
    d.frames++;
    d.peak_score = MAX (d.peak_score, (double) m->score);
  } else if (d.active && ++d.normal_run >= run.end_frames) {
    end_defect (trans, run, "normal");
  }
}

static GstFlowReturn
gst_pefm_publish_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (trans);
  PublishRun *run = self->run;  /* set before, cleared after streaming */

  if (!run) {
    GST_ELEMENT_ERROR (self, CORE, STATE_CHANGE, (NULL), ("not started"));
    return GST_FLOW_ERROR;
  }
  const GstPefmMeta *m = gst_buffer_get_pefm_meta (buf);
  const GstClockTime pts = GST_BUFFER_PTS (buf);
  if (m && m->model_name)
    run->model = pefm::model_json (m);
  stamp_buffer (trans, *run, buf);
  const pefm::Json head = line_head (trans, *run, "frame", run->frame, pts);
  const bool send_frame = run->frames == GST_PEFM_PUBLISH_FRAMES_ALL ||
      (run->frames == GST_PEFM_PUBLISH_FRAMES_ANOMALOUS && m && m->inspected && m->anomalous);
  if (send_frame) {
    pefm::Json line = head;
    pefm::add_meta_json (&line, m);
    run->publisher->post (pefm::json_text (line), false);
  }
  /* continuous line-scan mode: each web region once, when it ends, in web coordinates */
  if (m && m->continuous) {
    for (guint i = 0; i < m->n_regions; ++i) {
      pefm::Json line = head;
      line["type"] = "web-region";
      line["web_row"] = m->web_row;
      line["region"] = pefm::region_json (m->regions[i]);
      run->publisher->post (pefm::json_text (line), true);
    }
  }
  follow_defect (trans, *run, m, pts, head);
  run->frame++;
  return GST_FLOW_OK;
}

static gboolean
gst_pefm_publish_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (trans);
  PublishRun *run = self->run;

  if (run) {
    switch (GST_EVENT_TYPE (event)) {
      case GST_EVENT_EOS:
        end_defect (trans, *run, "eos");
        drain_at_eos (trans, *run);
        break;
      case GST_EVENT_FLUSH_STOP:
        end_defect (trans, *run, "flush");
        break;
      case GST_EVENT_STREAM_START:{
        end_defect (trans, *run, "stream-start");
        run->live = -1;
        const gchar *stream_id = NULL;
        gst_event_parse_stream_start (event, &stream_id);
        if (!run->named) {
          const std::string camera = camera_name (self);
          run->source = !camera.empty ()? camera : stream_id ? stream_id : "";
        }
        break;
      }
      default:
        break;
    }
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static void
gst_pefm_publish_finalize (GObject * object)
{
  GstPefmPublish *self = GST_PEFM_PUBLISH (object);

  delete self->run;
  g_free (self->location);
  g_free (self->address);
  g_free (self->topic);
  g_free (self->client_id);
  g_free (self->source_id);
  g_free (self->topic_events);
  g_free (self->topic_status);
  g_free (self->tls_ca);
  g_free (self->tls_cert);
  g_free (self->tls_key);
  g_free (self->username);
  g_free (self->password_file);
  self->last_stats.~PublisherStats ();
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_pefm_publish_class_init (GstPefmPublishClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  const auto flags = static_cast < GParamFlags > (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
      GST_PARAM_MUTABLE_READY);

  gobject_class->set_property = gst_pefm_publish_set_property;
  gobject_class->get_property = gst_pefm_publish_get_property;
  gobject_class->finalize = gst_pefm_publish_finalize;

  g_object_class_install_property (gobject_class, PROP_METHOD,
      g_param_spec_enum ("method", "Method", "Where the JSON lines go",
          gst_pefm_publish_method_get_type (), DEFAULT_METHOD, flags));
  g_object_class_install_property (gobject_class, PROP_LOCATION,
      g_param_spec_string ("location", "Location", "method=file: the JSON-lines file, replaced at start (never a "
          "file of another kind or one this pipeline uses); a restart in the same process adds to it", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_APPEND,
      g_param_spec_boolean ("append", "Append", "method=file: add to an existing results file instead of replacing "
          "it", FALSE, flags));
  g_object_class_install_property (gobject_class, PROP_ADDRESS,
      g_param_spec_string ("address", "Address",
          "method=mqtt: the broker, HOST:PORT or HOST (port 1883, with tls-ca 8883)", DEFAULT_ADDRESS, flags));
  g_object_class_install_property (gobject_class, PROP_TOPIC,
      g_param_spec_string ("topic", "Topic", "method=mqtt: the topic published to", DEFAULT_TOPIC, flags));
  g_object_class_install_property (gobject_class, PROP_QOS,
      g_param_spec_int ("qos", "QoS",
          "method=mqtt: quality of service (0 at most once, 1 at least once, 2 exactly once)", 0, 2,
          DEFAULT_QOS, flags));
  g_object_class_install_property (gobject_class, PROP_CLIENT_ID,
      g_param_spec_string ("client-id", "Client id",
          "method=mqtt: the MQTT client id (default pefm-HOST-PID-NAME)", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_SOURCE_ID,
      g_param_spec_string ("source-id", "Source id",
          "The \"source\" of every line (default: the camera or file the pipeline reads, else the stream id)", NULL,
          flags));
  g_object_class_install_property (gobject_class, PROP_TOPIC_EVENTS,
      g_param_spec_string ("topic-events", "Events topic",
          "method=mqtt: the topic of the defect events and web regions (default: topic, with the frame lines)", NULL,
          flags));
  g_object_class_install_property (gobject_class, PROP_TOPIC_STATUS,
      g_param_spec_string ("topic-status", "Status topic",
          "method=mqtt: the retained online/offline status, offline also as the last will (default: TOPIC/status; "
          "\"\": none)", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_TLS_CA,
      g_param_spec_string ("tls-ca", "TLS CA file",
          "method=mqtt: connect over TLS, checking the broker's certificate and name against this CA file (PEM)",
          NULL, flags));
  g_object_class_install_property (gobject_class, PROP_TLS_CERT,
      g_param_spec_string ("tls-cert", "TLS certificate",
          "method=mqtt: this client's certificate (PEM), for brokers that require one; with tls-key", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_TLS_KEY,
      g_param_spec_string ("tls-key", "TLS key",
          "method=mqtt: the key of tls-cert (PEM, not encrypted: keep the file private)", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_USERNAME,
      g_param_spec_string ("username", "Username", "method=mqtt: the login's user name", NULL, flags));
  g_object_class_install_property (gobject_class, PROP_PASSWORD_FILE,
      g_param_spec_string ("password-file", "Password file",
          "method=mqtt: a file whose first line is the login's password (refused if every user may read it)", NULL,
          flags));
  g_object_class_install_property (gobject_class, PROP_FRAMES,
      g_param_spec_enum ("frames", "Frames", "Which frames get a line (the defect events are always sent)",
          gst_pefm_publish_frames_get_type (), DEFAULT_FRAMES, flags));
  g_object_class_install_property (gobject_class, PROP_END_FRAMES,
      g_param_spec_uint ("end-frames", "End frames",
          "Consecutive normal frames that end a defect (uninspected frames do not count)", 1, G_MAXUINT,
          DEFAULT_END_FRAMES, flags));
  g_object_class_install_property (gobject_class, PROP_MAX_BUFFERED,
      g_param_spec_uint ("max-buffered", "Max buffered",
          "Lines waiting to be sent, at most; beyond, the oldest frame lines are dropped and counted", 1,
          G_MAXUINT, DEFAULT_MAX_BUFFERED, flags));
  g_object_class_install_property (gobject_class, PROP_DRAIN_TIMEOUT,
      g_param_spec_uint ("drain-timeout", "Drain timeout",
          "Milliseconds the element may still send queued lines at EOS (holding the EOS), and again when stopping", 0, 600000,
          DEFAULT_DRAIN_TIMEOUT, flags));
  /**
   * GstPefmPublish:stats:
   *
   * Counts of this run (or the last one, after stopping): posted, sent (written, or
   * acknowledged by the broker with QoS 1 and 2), dropped, buffered, connects, connected,
   * last-error.
   */
  g_object_class_install_property (gobject_class, PROP_STATS,
      g_param_spec_boxed ("stats", "Statistics", "posted, sent, dropped, buffered, connects, connected, last-error",
          GST_TYPE_STRUCTURE, static_cast < GParamFlags > (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  gst_element_class_set_static_metadata (element_class, "PEFM result publisher",
      "Sink/Network",
      "Sends pefmfilter's results (GstPefmMeta) and defect start/end events as JSON lines to stdout, a file or MQTT",
      "pefm developers");
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  trans_class->passthrough_on_same_caps = TRUE;
  trans_class->transform_ip_on_passthrough = TRUE;
  trans_class->start = GST_DEBUG_FUNCPTR (gst_pefm_publish_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_pefm_publish_stop);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_pefm_publish_transform_ip);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_pefm_publish_sink_event);

  gst_type_mark_as_plugin_api (gst_pefm_publish_method_get_type (), (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (gst_pefm_publish_frames_get_type (), (GstPluginAPIFlags) 0);
}

static void
gst_pefm_publish_init (GstPefmPublish * self)
{
  self->method = DEFAULT_METHOD;
  self->address = g_strdup (DEFAULT_ADDRESS);
  self->topic = g_strdup (DEFAULT_TOPIC);
  self->qos = DEFAULT_QOS;
  self->frames = DEFAULT_FRAMES;
  self->end_frames = DEFAULT_END_FRAMES;
  self->max_buffered = DEFAULT_MAX_BUFFERED;
  self->drain_timeout = DEFAULT_DRAIN_TIMEOUT;
  new (&self->last_stats) pefm::PublisherStats ();
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), TRUE);
}
