#!/usr/bin/env bash
# System libraries MuJoCo needs to render offscreen without a display: EGL with
# Mesa's software rasterizer (llvmpipe). Installed only when missing.
set -euo pipefail
have() { ldconfig -p 2>/dev/null | grep -q "$1"; }
if have libEGL.so.1 && have libEGL_mesa.so.0 && [ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so -o -e /usr/lib/x86_64-linux-gnu/dri/kms_swrast_dri.so -o -n "$(ls /usr/lib/*/dri/*swrast* 2>/dev/null)" ]; then
  exit 0
fi
pkgs="libegl1 libegl-mesa0 libgl1-mesa-dri libgles2"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing OpenGL (EGL) libraries for offscreen rendering: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs
elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then
  sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends $pkgs
else
  echo "kinema needs EGL + Mesa for offscreen rendering; install: $pkgs (Debian/Ubuntu names)" >&2
  exit 1
fi
