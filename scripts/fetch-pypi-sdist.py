#!/usr/bin/env python3
"""fetch-pypi-sdist.py: download one release's source archive from a PyPI
index as a plain file, checked against the index's sha256, and print its path.

    scripts/fetch-pypi-sdist.py NAME VERSION DEST_DIR

Why not `pip download --no-binary :all:`: pip prepares an sdist's metadata
before it saves it, which installs the project's build backend into a fresh
isolated environment. For llama-cpp-python's 76 MB sdist that was 64 CPU-seconds
and 82 s with a cold pip cache on an idle 2-core box, and ~9 minutes in CI's
dry run beside the build (docs/testing.md), while llama.cpp's build, which
needs these sources, waited. This reads the index's JSON page (PEP 691,
https://peps.python.org/pep-0691/) and downloads the one file.

The index is $PIP_INDEX_URL when set, else https://pypi.org/simple. When the
index cannot be read this way (network error, or an index without PEP 691
JSON pages) it says why on stderr and falls back to pip download. Exit 1
with the reason on stderr when neither works or the file's hash is wrong;
the file appears in DEST_DIR only once it is whole and its hash matches.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request


def simple_page(index: str, name: str) -> dict:
    project = re.sub(r"[-_.]+", "-", name).lower()  # PEP 503 normalized name
    url = f"{index.rstrip('/')}/{project}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def sdist_entry(page: dict, name: str, version: str) -> dict:
    # An sdist's file name is {normalized name with underscores}-{version}.tar.gz
    # (PyPA's source distribution format); older uploads keep the dashes.
    stems = {re.sub(r"[-_.]+", "_", name).lower(), name}
    wanted = {f"{stem}-{version}.tar.gz" for stem in stems}
    for entry in page.get("files", []):
        if entry.get("filename") in wanted:
            return entry
    raise SystemExit(f"fetch-pypi-sdist: no source archive {' or '.join(sorted(wanted))} on the index page of {name}")


def download_checked(entry: dict, dest_dir: str) -> str:
    expected = entry.get("hashes", {}).get("sha256")
    if not expected:
        raise SystemExit(f"fetch-pypi-sdist: the index gives no sha256 for {entry['filename']}")
    target = os.path.join(dest_dir, entry["filename"])
    os.makedirs(dest_dir, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=dest_dir, prefix=".part-", delete=False) as part:
        try:
            with urllib.request.urlopen(entry["url"], timeout=120) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    part.write(chunk)
            if digest.hexdigest() != expected:
                raise SystemExit(f"fetch-pypi-sdist: {entry['filename']}: sha256 {digest.hexdigest()}, the index says {expected}")
        except BaseException:
            os.unlink(part.name)
            raise
    os.chmod(part.name, 0o644)  # a temporary file is private; the archive is not
    os.replace(part.name, target)
    return target


def pip_download(name: str, version: str, dest_dir: str) -> str:
    # pip's own progress goes to stderr: this script's stdout is the path alone.
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"{name}=={version}", "-d", dest_dir], check=True, stdout=sys.stderr)
    found = [f for f in os.listdir(dest_dir) if f.endswith(f"-{version}.tar.gz")
             and re.sub(r"[-_.]+", "_", f[: -len(f"-{version}.tar.gz")]).lower() == re.sub(r"[-_.]+", "_", name).lower()]
    if len(found) != 1:
        raise SystemExit(f"fetch-pypi-sdist: pip download left no single source archive of {name}=={version} in {dest_dir}")
    return os.path.join(dest_dir, found[0])


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit("usage: fetch-pypi-sdist.py NAME VERSION DEST_DIR")
    name, version, dest_dir = sys.argv[1:]
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    try:
        page = simple_page(index, name)
    except (OSError, ValueError) as error:  # network errors; ValueError: not a JSON page
        print(f"fetch-pypi-sdist: cannot read {index}'s JSON page of {name} ({error}); using pip download",
              file=sys.stderr)
        try:
            print(pip_download(name, version, dest_dir))
        except subprocess.CalledProcessError as failed:
            raise SystemExit(f"fetch-pypi-sdist: pip download of {name}=={version} failed (exit {failed.returncode})")
        return
    try:
        print(download_checked(sdist_entry(page, name, version), dest_dir))
    except OSError as error:  # network and disk errors during the download, named
        raise SystemExit(f"fetch-pypi-sdist: {name}=={version} from {index}: {error}")


if __name__ == "__main__":
    main()
