#!/usr/bin/env bash
# Make sure one system dependency is on this machine, installing it with Debian's apt when it is
# not: as root directly, otherwise through sudo. Used by the Makefile's setup, data, browser and
# bench targets, so a fresh machine and CI take the same path.
#
#   scripts/need.sh venv | data | browser | icons
#
# When something cannot be installed the reason is printed in a banner on stderr. The exit
# status is then 1 where the thing is required (venv always; data with HEADSTART_REQUIRE_DATA=1;
# browser with HEADSTART_REQUIRE_BROWSER=1, as CI sets them), else 0 and the banner says what will
# be skipped instead.
set -uo pipefail

what="${1:-}"
PYTHON="${PYTHON:-python3}"
FASHION_DIR="${HEADSTART_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"

case "$what" in
  venv)
    packages="python3-venv"
    required=1
    skipped="nothing can be installed without it"
    present() { "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; }
    ;;
  data)
    packages="dataset-fashion-mnist"
    required="${HEADSTART_REQUIRE_DATA:-0}"
    skipped="the demo and the Fashion-MNIST tests will use scikit-learn's digits or be skipped"
    present() { [ -f "$FASHION_DIR/t10k-images-idx3-ubyte.gz" ] || [ -f "$FASHION_DIR/t10k-images-idx3-ubyte" ]; }
    ;;
  browser)
    packages="chromium chromium-driver"
    required="${HEADSTART_REQUIRE_BROWSER:-0}"
    skipped="the report's browser test will be skipped"
    present() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
    ;;
  icons)
    packages="gnome-icon-theme faenza-icon-theme elementary-xfce-icon-theme oxygen-icon-theme adwaita-icon-theme"
    required=1
    skipped="the icons benchmark cannot run"
    present() { [ -d /usr/share/icons/Faenza ] && [ -d /usr/share/icons/oxygen ]; }
    ;;
  *)
    echo "usage: $0 venv|data|browser|icons" >&2
    exit 64
    ;;
esac

fail() {
  {
    echo "=================================================================="
    echo "headstart set-up: could not install $what ($packages)"
    echo "  reason: $1"
    echo "  to fix: as root, run: apt-get update && apt-get install -y $packages"
    if [ "$required" = 1 ]; then
      echo "  this is required here; stopping."
    else
      echo "  going on without it: $skipped."
    fi
    echo "=================================================================="
  } >&2
  [ "$required" = 1 ] && exit 1
  exit 0
}

if present; then
  echo "$what: present"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || fail "this machine has no apt-get (not Debian or Ubuntu)"

if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
  as_root=(sudo)  # asks for the password on this terminal
else
  fail "not running as root, and sudo is missing or needs a password that cannot be asked for here"
fi

echo "$what: installing $packages with apt-get${as_root:+ (via ${as_root[*]})}"
# env, not a VAR=value prefix: after sudo (or with no sudo at all) the assignment must reach apt-get
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
  || fail "apt-get update failed (see its message above)"
# shellcheck disable=SC2086 # the package list is meant to split into words
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null \
  || fail "apt-get install failed (see its message above)"
present || fail "apt-get finished, but $what is still not there"
echo "$what: installed"
