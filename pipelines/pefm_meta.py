#!/usr/bin/env python3
"""Reads pefmfilter's results (GstPefmMeta) in a Python application, through the GstPefm
GObject-Introspection typelib that pefm builds (Debian: python3-gi).

    pipelines/pefm_meta.py 'videotestsrc num-buffers=5 ! pefmfilter model=m.pt ! appsink name=results'

Prints one JSON line per frame reaching `appsink name=results`: frame, pts, score, decision,
regions, the heat map's size and its largest value (the map is read as float32 bytes).
From a build tree, let GObject find the typelib and its library:

    GI_TYPELIB_PATH=build/gst-plugin LD_LIBRARY_PATH=build/gst-plugin pipelines/pefm_meta.py ...
"""
import json
import math
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstPefm", "1.0")
from gi.repository import Gst, GstApp, GstPefm  # noqa: E402  (after require_version)


def frame_result(index, buf):
    """The GstPefmMeta of one buffer as a dict (None fields when the frame has no meta)."""
    line = {"frame": index, "pts": buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else None}
    meta = GstPefm.buffer_get_meta(buf)
    if meta is None:
        line["decision"] = "no-meta"
        return line
    if not meta.is_inspected():
        line["decision"] = "uninspected"
    else:
        line["decision"] = "anomalous" if meta.is_anomalous() else "normal"
    line["score"] = round(meta.get_score(), 6)
    line["threshold"] = round(meta.get_threshold(), 6)
    line["region_threshold"] = round(meta.get_region_threshold(), 6)
    line["region_level"] = round(meta.get_region_level(), 6)
    regions = []
    for r in meta.get_regions():  # copies; the meta itself is read-only here
        region = {"x": r.x, "y": r.y, "width": r.width, "height": r.height,
                  "area": r.area, "peak": round(r.peak, 6)}
        if r.web_height > 0:  # continuous line-scan mode: the whole extent on the web
            region.update({"web_y": r.web_y, "web_height": r.web_height, "web_x": r.web_x,
                           "web_width": r.web_width, "closed_by": r.closed_by or ""})
            if math.isfinite(r.web_y_mm):
                region.update({"web_y_mm": round(r.web_y_mm, 6), "web_x_mm": round(r.web_x_mm, 6),
                               "height_mm": round(r.height_mm, 6), "width_mm": round(r.width_mm, 6)})
        regions.append(region)
    line["regions"] = regions
    if meta.is_continuous():
        line["web_row"] = meta.get_web_row()
    if meta.get_model_name() is not None:  # the model that judged the frame
        line["model"] = {"name": meta.get_model_name(), "sha256": meta.get_model_sha256()}
    width, height = meta.get_map_size()
    line["map"] = [width, height]
    values = meta.get_map()  # a copy of the map's floats, row-major; empty without a map
    if values:
        line["map_values"] = len(values)
        line["map_max"] = round(max(values), 6) if values else None
    return line


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if len(argv) == 2 else 2
    Gst.init(None)
    try:
        pipeline = Gst.parse_launch(argv[1])
    except gi.repository.GLib.Error as e:
        print(f"pefm_meta.py: bad pipeline: {e.message}", file=sys.stderr)
        return 2
    sink = pipeline.get_by_name("results")
    if not isinstance(sink, GstApp.AppSink):
        print("pefm_meta.py: the pipeline has no 'appsink name=results'", file=sys.stderr)
        return 2
    sink.set_property("sync", False)
    pipeline.set_state(Gst.State.PLAYING)
    index = 0
    while True:
        sample = sink.pull_sample()
        if sample is None:
            break
        print(json.dumps(frame_result(index, sample.get_buffer())), flush=True)
        index += 1
    bus = pipeline.get_bus()
    msg = bus.timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
    status = 0
    if msg is not None and msg.type == Gst.MessageType.ERROR:
        err, _ = msg.parse_error()
        print(f"pefm_meta.py: {msg.src.get_name()}: {err.message}", file=sys.stderr)
        status = 1
    pipeline.set_state(Gst.State.NULL)
    print(f"pefm_meta.py: {index} frames", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
