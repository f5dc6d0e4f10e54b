#!/usr/bin/python3
"""Serves a video file as a network camera would: RTSP on 127.0.0.1 (gst-rtsp-server).

    pipelines/rtsp-serve.py VIDEO.mp4 [--port 8554] [--path /line1] [--address 127.0.0.1]

An MP4 with H.264 video is sent as it is (no re-encoding), from its start for each client.
Prints the URL once clients can connect, then serves until interrupted. --port 0 takes a free port (printed). Debian: gir1.2-gst-rtsp-server-1.0,
python3-gi, gstreamer1.0-plugins-good and -bad.
"""
import argparse
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", help="an MP4 file with H.264 video")
    parser.add_argument("--port", type=int, default=8554, help="0: any free port")
    parser.add_argument("--path", default="/line1")
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()
    if not os.path.isfile(args.video):
        sys.exit(f"rtsp-serve: no file {args.video!r}")
    if not args.path.startswith("/") or any(c in args.path for c in " !\"'()"):
        sys.exit(f"rtsp-serve: --path {args.path!r} must start with / and hold no spaces, quotes, ! or ()")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # The file's name is one quoted property value: a quote in it would end the quoting.
    if '"' in args.video or "\\" in args.video:
        sys.exit(f"rtsp-serve: the file name {args.video!r} holds a quote or a backslash")
    factory.set_launch(
        f'( filesrc location="{args.video}" ! qtdemux ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 )")
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"rtsp-serve: cannot listen on {args.address}:{args.port}")
    print(f"rtsp-serve: rtsp://{args.address}:{server.get_bound_port()}{args.path}", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
