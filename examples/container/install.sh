#!/bin/sh
# The image's install step, also run by scripts/test outside Docker:
#
#     install.sh VENV REQUIREMENTS [WHEEL...]
#
# creates the virtualenv VENV and installs the app's requirements into it,
# with bellwether's wheel (from scripts/release: both binaries land on the
# virtualenv's PATH) when one is given.
set -eu
[ $# -ge 2 ] || { echo "usage: install.sh VENV REQUIREMENTS [WHEEL...]" >&2; exit 64; }
venv=$1 requirements=$2
shift 2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check -r "$requirements" "$@"
