#!/usr/bin/env python3
"""Writes bellwether's wheel (called by scripts/release).

A wheel is a zip file; this one holds no Python code, only what pip copies
into the virtualenv (PEP 427's .data directory):

    bellwether-V.data/scripts/bellwether          -> VENV/bin/bellwether
    bellwether-V.data/scripts/bellwether-exec     -> VENV/bin/bellwether-exec
    bellwether-V.data/data/share/bellwether/gunicorn.conf.py, forkserver.py
                                                  -> VENV/share/bellwether/
    bellwether-V.data/data/share/man/man1/bellwether.1
                                                  -> VENV/share/man/man1/
    bellwether-V.dist-info/METADATA, WHEEL, RECORD

Both binaries land in one directory, as bellwether needs. The zip entries
carry mode 0755 for them, which pip keeps. Timestamps are SOURCE_DATE_EPOCH's.

usage: wheel.py --version V --tag py3-none-PLATFORM --summary TEXT
                --maintainer "NAME <EMAIL>" --bin DIR --out DIR
"""
import argparse
import base64
import hashlib
import os
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "bellwether"
CLASSIFIERS = [
    "Development Status :: 3 - Alpha",
    "Environment :: No Input/Output (Daemon)",
    "Intended Audience :: System Administrators",
    "Operating System :: POSIX :: Linux",
    "Topic :: Internet :: WWW/HTTP :: WSGI :: Server",
    "Topic :: System :: Systems Administration",
]


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def main():
    parser = argparse.ArgumentParser(description="Writes bellwether's wheel.")
    for option in ("version", "tag", "summary", "maintainer", "bin", "out"):
        parser.add_argument("--" + option, required=True)
    args = parser.parse_args()

    data = f"{NAME}-{args.version}.data"
    info = f"{NAME}-{args.version}.dist-info"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        description = readme.read()
    metadata = "".join(
        [f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {args.version}\nSummary: {args.summary}\n",
         f"Author-email: {args.maintainer}\n"]
        + [f"Classifier: {c}\n" for c in CLASSIFIERS]
        + ["Description-Content-Type: text/markdown\n\n", description])
    wheel = (f"Wheel-Version: 1.0\nGenerator: bellwether scripts/release\n"
             f"Root-Is-Purelib: false\nTag: {args.tag}\n")

    def read(path):
        with open(path, "rb") as file:
            return file.read()

    # (path in the wheel, content, mode); the dist-info comes last.
    entries = [
        (f"{data}/scripts/bellwether", read(os.path.join(args.bin, "bellwether")), 0o755),
        (f"{data}/scripts/bellwether-exec", read(os.path.join(args.bin, "bellwether-exec")), 0o755),
        (f"{data}/data/share/bellwether/gunicorn.conf.py", read(os.path.join(ROOT, "etc", "gunicorn.conf.py")), 0o644),
        # --preload's fork server, where bellwether looks for it: BINDIR/../share/bellwether/.
        (f"{data}/data/share/bellwether/forkserver.py", read(os.path.join(ROOT, "share", "forkserver.py")), 0o644),
        (f"{data}/data/share/man/man1/bellwether.1", read(os.path.join(ROOT, "man", "bellwether.1")), 0o644),
        (f"{info}/METADATA", metadata.encode(), 0o644),
        (f"{info}/WHEEL", wheel.encode(), 0o644),
    ]
    record = "".join(f"{path},{record_hash(content)},{len(content)}\n" for path, content, _ in entries)
    entries.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode(), 0o644))

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    stamp = time.gmtime(max(epoch, 315532800))[:6]  # zip cannot say before 1980
    out = os.path.join(args.out, f"{NAME}-{args.version}-{args.tag}.whl")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content, mode in entries:
            entry = zipfile.ZipInfo(path, stamp)
            entry.external_attr = (0o100000 | mode) << 16
            entry.create_system = 3  # Unix, so that the mode is read
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, content, compresslevel=9)
    print(out)


if __name__ == "__main__":
    main()
