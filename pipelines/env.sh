# Sourced by the pipeline scripts: use the build tree's tools and plugin (build/, or
# $PEFM_BUILD_DIR) when present, else an installed pefm.
pefm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pefm_build=${PEFM_BUILD_DIR:-$pefm_root/build}
if [ -x "$pefm_build/core/tools/pefm-train" ]; then
  export PATH="$pefm_build/core/tools:$pefm_build/pipelines:$PATH"
  export GST_PLUGIN_PATH="$pefm_build/gst-plugin${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
fi
if ! command -v pefm-train >/dev/null || ! gst-inspect-1.0 pefmfilter >/dev/null 2>&1; then
  echo "pefm is not built: run pipelines/setup.sh first" >&2
  exit 1
fi
