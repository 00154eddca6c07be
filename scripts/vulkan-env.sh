#!/usr/bin/env bash
# Prepares this Debian 12 machine to build and run clex's `vulkan` feature without a GPU,
# then prints `export` lines for the build (use: `eval "$(scripts/vulkan-env.sh)"`).
#
# Why each piece:
# - ggml-vulkan needs Vulkan headers newer than Debian 12's 1.3.239 (it uses
#   VK_EXT_layer_settings). Debian 13's libvulkan-dev .deb is downloaded from the Debian
#   archive and unpacked (not installed) into a prefix; VULKAN_SDK points the build (CMake's
#   FindVulkan) at its headers, and at this system's own loader for linking (Debian 13's
#   libvulkan.so needs a newer glibc). Nothing of llama.cpp is patched.
# - glslc and spirv-headers compile ggml's shaders; Debian 12's are recent enough.
# - mesa-vulkan-drivers from bookworm-backports (Mesa 25) gives lavapipe, a CPU Vulkan
#   driver; Debian 12's Mesa 22.3 lavapipe was seen to abort with heap corruption.
# - ggml skips CPU-type Vulkan devices unless GGML_VK_VISIBLE_DEVICES names them.
#
# Needs root for apt-get (CI runs as root). Idempotent; the prefix is cached in
# ~/.cache/clex-vulkan.
set -euo pipefail
P="${CLEX_VULKAN_CACHE:-$HOME/.cache/clex-vulkan}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DEBIAN_FRONTEND=noninteractive

log() { echo "vulkan-env: $*" >&2; }

if ! dpkg -s glslc spirv-headers libvulkan1 >/dev/null 2>&1; then
  log "installing glslc spirv-headers libvulkan1"
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends glslc spirv-headers libvulkan1 >&2
fi
mesa_ver=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
case "$mesa_ver" in
  2[5-9].*) ;;
  *)
    log "installing mesa-vulkan-drivers from bookworm-backports (have: ${mesa_ver:-none})"
    echo "deb $MIRROR bookworm-backports main" > /etc/apt/sources.list.d/clex-backports.list
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >&2
    ;;
esac

if [ ! -f "$P/sdk/include/vulkan/vulkan.hpp" ]; then
  log "unpacking Debian 13's libvulkan-dev into $P"
  mkdir -p "$P/debs" "$P/prefix" "$P/sdk"
  curl -fsSL "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz" | xz -d > "$P/Packages"
  for pkg in libvulkan-dev; do
    f=$(awk -v p="$pkg" '$1=="Package:"{cur=$2} cur==p && $1=="Filename:"{print $2; exit}' "$P/Packages")
    [ -n "$f" ] || { log "no $pkg in trixie's Packages"; exit 1; }
    curl -fsSL -o "$P/debs/$(basename "$f")" "$MIRROR/$f"
    dpkg-deb -x "$P/debs/$(basename "$f")" "$P/prefix"
  done
  ln -sfn "$P/prefix/usr/include" "$P/sdk/include"
fi
# Link against this system's own loader (Debian 13's needs glibc 2.38); only the headers
# must be new. The loader passes extensions through to the driver.
if [ ! -e "$P/sdk/lib/libvulkan.so" ]; then
  rm -rf "$P/sdk/lib"
  mkdir -p "$P/sdk/lib"
  loader=$(ls /usr/lib/x86_64-linux-gnu/libvulkan.so.1 2>/dev/null || true)
  [ -n "$loader" ] || { log "no system libvulkan.so.1 (package libvulkan1)"; exit 1; }
  ln -sfn "$loader" "$P/sdk/lib/libvulkan.so"
fi

echo "export VULKAN_SDK=$P/sdk"
echo "export GGML_VK_VISIBLE_DEVICES=0"
