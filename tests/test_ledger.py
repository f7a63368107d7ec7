"""The prediction ledger through the CLI: every kind of entry in one ledger, old ledgers, --expect, signatures, git
anchors, and what verify cannot see without an anchor. (And `foresight fit` on a binary file, a CSV-reader refusal
of scaling/commands.py.)"""

import json
import os
import stat
import subprocess

import numpy as np
import pytest

from foresight.cli import main
from foresight.scaling.forecast import capabilities_entry, loss_entry
from foresight.scaling.ledger import GENESIS, canonical, entry_hash, load_signing_key, make_entry, register, verify

# Written by the ledger code before entry format 2 (commit 40b4f4a): a forecast's loss entry, a capability entry
# (predictions keyed by bucket: the shape `ledger show` crashed on) and a `foresight predict --register` entry.
OLD_LEDGER = """\
{"index":0,"ladder_results":{"run0":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","run1":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"},"law":"L(C) = alpha - beta*ln(C)","params":{"alpha":9.1,"beta":0.2},"prediction":{"high":3.174,"level":0.9,"low":2.9873,"x":20010534000000.0,"y":3.0792},"prev_sha256":"0000000000000000000000000000000000000000000000000000000000000000","sha256":"35d42cb356595f66d7ca7a990a78864456a684860347cd87a329ac2473259d9e","target_compute":20010534000000.0,"target_config_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","time_utc":"2026-12-05T09:08:31+00:00"}
{"index":1,"kind":"capabilities","ladder_results":{"run0":"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"},"law":"-E[log pass_rate] = alpha * C^(-k)","predictions":{"level 1":{"high":1.128,"level":0.9,"low":0.366,"params":{"alpha":5.0,"k":0.1},"task_ids":["Ex/1","Ex/2"],"x":20010534000000.0,"y":0.685}},"prev_sha256":"35d42cb356595f66d7ca7a990a78864456a684860347cd87a329ac2473259d9e","sha256":"ea90470a94d995aef2dbb1b74f62db901b701abb061ecfd45da8aadc6a6dc066","target_compute":20010534000000.0,"target_config_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","time_utc":"2026-12-05T09:08:31+00:00"}
{"index":2,"ladder_results":{"r0":"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"},"law":"L(C) = a*C^(-b) + c","level":0.9,"params":{"a":5.0,"b":0.05,"c":1.5},"predictions":[{"extrapolation":100.0,"high":2.6,"low":2.4,"x":1e+16,"y":2.5}],"prev_sha256":"ea90470a94d995aef2dbb1b74f62db901b701abb061ecfd45da8aadc6a6dc066","sha256":"2b8dd07c9e6b0316afd5ef66aaa36762deb3be2bbe80bbf5ce443f5debae83bc","source":"runs.csv","target_config_sha256":null,"time_utc":"2026-12-05T09:08:31+00:00"}
"""
OLD_HEAD = "2b8dd07c9e6b0316afd5ef66aaa36762deb3be2bbe80bbf5ce443f5debae83bc"


def _cli(capsys, *args):
    """Run `foresight ARGS` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _entry(y=3.0):
    return make_entry("loss", "L(C) = a*C^(-b) + c",
                      [{"x": 1e16, "y": y, "low": y - 0.1, "high": y + 0.1, "level": 0.9, "params": {"a": 1.0}}],
                      ladder_results={"r0": "f" * 64})


def _ledger(path, n=3, key=None):
    for i in range(n):
        register(path, _entry(3.0 - i / 10), signing_key=key)
    return verify(path)


def _forge(path, key=None, y=2.0):
    """What a forger who controls the file can do: change entry 1's prediction and recompute every hash after it
    (and re-sign with `key`, the forger's own)."""
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    entries[1]["predictions"][0]["y"] = y
    prev = GENESIS
    for e in entries:
        e.pop("signature", None)
        e.pop("signer", None)
        e["prev_sha256"] = prev
        if key is not None:
            from foresight.scaling.ledger import public_hex

            e["signer"] = public_hex(key)
        e["sha256"] = prev = entry_hash(e)
        if key is not None:
            e["signature"] = key.sign(e["sha256"].encode()).hex()
    path.write_text("".join(canonical(e) + "\n" for e in entries))


def _keys(tmp_path, capsys, name="key"):
    code, out, _ = _cli(capsys, "ledger", "keygen", "--out", tmp_path / name)
    assert code == 0
    return tmp_path / name, out.split("public key: ")[1].strip()


def test_loss_and_capability_predictions_in_one_ledger(tmp_path, capsys):
    """All three writers (the forecast's two builders and `predict --register`) in one ledger; show and verify."""
    ledger = tmp_path / "ledger.jsonl"
    cfg = tmp_path / "target_config.toml"
    cfg.write_text("[train]\nflops = 2e13\n")
    summary = tmp_path / "run0.json"
    summary.write_text("{}")
    fit = {"law": "L(C) = alpha - beta*ln(C)", "params": {"alpha": 9.1, "beta": 0.2},
           "prediction": {"x": 2e13, "y": 3.0792, "low": 2.9873, "high": 3.174, "level": 0.9}}
    caps_fit = {"law": "-E[log pass_rate] = alpha * C^(-k)", "target_compute": 2e13, "buckets": [
        {"bucket": "level 1", "task_ids": ["Ex/1"], "params": {"alpha": 5.0, "k": 0.1},
         "prediction": {"x": 2e13, "y": 0.685, "low": 0.366, "high": 1.128, "level": 0.9}},
        {"bucket": "level 2", "skipped": "no problem solved by every ladder model"}]}
    register(ledger, loss_entry(fit, cfg, {"run0": summary}))
    register(ledger, capabilities_entry(caps_fit, cfg, [summary]))
    csv_path = tmp_path / "runs.csv"
    csv_path.write_text("name,flops,loss\n" + "".join(f"r{i},{c},{5 * c ** -0.05 + 1.5}\n"
                                                      for i, c in enumerate(np.logspace(12, 14, 5))))
    code, out, err = _cli(capsys, "predict", csv_path, "--x", "flops", "--y", "loss", "--predict", "1e15",
                          "--law", "log_linear", "--bootstrap", "20", "--register", "--ledger", ledger)
    assert code == 0, err
    head = verify(ledger)[-1]["sha256"]
    assert f"keep this head to detect later edits: {head}" in out

    code, out, err = _cli(capsys, "ledger", "show", ledger)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and lines[-1] == f"head {head}"
    assert " loss " in lines[0] and "3.0792 [2.9873, 3.1740]" in lines[0]
    assert " capabilities " in lines[1] and "level 1: 0.6850 [0.3660, 1.1280]" in lines[1]
    assert "level 2" not in lines[1]  # a skipped bucket holds no prediction
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--expect", head)
    assert code == 0, err
    assert "3 entries, chain intact" in out and "matches entry 2" in out and "the last one" in out


def test_old_shape_ledger_still_verifies_shows_and_takes_new_entries(tmp_path, capsys):
    ledger = tmp_path / "old.jsonl"
    ledger.write_text(OLD_LEDGER)
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--expect", OLD_HEAD)
    assert code == 0, err
    assert f"3 entries, chain intact, head {OLD_HEAD}" in out and "matches entry 2" in out
    code, out, err = _cli(capsys, "ledger", "show", ledger)
    assert code == 0, err
    assert "3.0792 [2.9873, 3.1740]" in out and "level 1: 0.6850 [0.3660, 1.1280]" in out
    assert "2.5000 [2.4000, 2.6000]" in out
    register(ledger, _entry())  # a format-2 entry appended to an old chain
    assert verify(ledger, expect=OLD_HEAD)[-1]["prev_sha256"] == OLD_HEAD
    # the old entries are checked as strictly as ever: one changed digit fails
    ledger.write_text(OLD_LEDGER.replace('"y":0.685', '"y":0.585'))
    code, _, err = _cli(capsys, "ledger", "verify", ledger)
    assert code == 2 and "entry 1" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["", "1", "35d42cb356595f66", "z" * 64, OLD_HEAD + "0"])
def test_expect_refuses_anything_but_a_full_sha256(tmp_path, capsys, bad):
    ledger = tmp_path / "old.jsonl"
    ledger.write_text(OLD_LEDGER)
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--expect", bad)
    assert code == 2 and "is not a sha256" in err and "64 hex" in err and out == ""  # no "intact" first


def test_expect_catches_entries_cut_from_the_end(tmp_path, capsys):
    ledger = tmp_path / "old.jsonl"
    ledger.write_text("".join(OLD_LEDGER.splitlines(keepends=True)[:2]))
    code, out, _ = _cli(capsys, "ledger", "verify", ledger)
    assert code == 0 and "self-consistent only" in out  # the cut is invisible without the head...
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--expect", OLD_HEAD.upper())
    assert code == 2 and f"no entry has sha256 {OLD_HEAD}" in err and out == ""  # ...and caught with it


def test_an_empty_ledger_is_refused(tmp_path, capsys):
    ledger = tmp_path / "empty.jsonl"
    ledger.write_text("")
    for command in ("verify", "show"):
        code, out, err = _cli(capsys, "ledger", command, ledger)
        assert code == 2 and "holds no entries" in err and out == ""
    register(ledger, _entry())  # but an empty file (a first append that never happened) can be appended to
    assert len(verify(ledger)) == 1


def test_a_rewritten_chain_passes_alone_and_fails_against_any_anchor(tmp_path, capsys):
    """The limit of a self-contained chain, and what each anchor adds."""
    key, public = _keys(tmp_path, capsys)
    forger_key, _ = _keys(tmp_path, capsys, "forger")
    ledger = tmp_path / "ledger.jsonl"
    head = _ledger(ledger, key=load_signing_key(key))[-1]["sha256"]
    _forge(ledger, key=load_signing_key(forger_key))
    code, out, err = _cli(capsys, "ledger", "verify", ledger)
    assert code == 0 and verify(ledger)[1]["predictions"][0]["y"] == 2.0  # undetected: the documented limit
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--expect", head)
    assert code == 2 and "no entry has sha256" in err
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", public)
    assert code == 2 and "entry 0" in err and "signed by another key" in err
    _forge(ledger, key=None)  # or stripped of signatures
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", key.with_name("key.pub"))
    assert code == 2 and "entry 0" in err and "not signed" in err


def test_signatures(tmp_path, capsys):
    key, public = _keys(tmp_path, capsys)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.with_name("key.pub").read_text().strip() == public
    code, _, err = _cli(capsys, "ledger", "keygen", "--out", key)
    assert code == 2 and "already exists" in err  # a key is never overwritten
    other, other_public = _keys(tmp_path, capsys, "other")

    ledger = tmp_path / "ledger.jsonl"
    _ledger(ledger, n=2, key=load_signing_key(key))
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", public)
    assert code == 0 and f"every entry is signed by {public}" in out, err
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", other_public)  # wrong key
    assert code == 2 and "signed by another key" in err
    # a changed signature byte is caught even without --public-key: the signer is inside the hashed entry
    text = ledger.read_text()
    sig = json.loads(text.splitlines()[1])["signature"]
    ledger.write_text(text.replace(sig, ("1" if sig[0] != "1" else "2") + sig[1:]))
    code, _, err = _cli(capsys, "ledger", "verify", ledger)
    assert code == 2 and "entry 1" in err and "signature that does not match" in err
    ledger.write_text(text)
    register(ledger, _entry())  # an unsigned entry after signed ones
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", public)
    assert code == 2 and "entry 2" in err and "not signed" in err
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--public-key", "abc")
    assert code == 2 and "neither 64 hex characters nor a file" in err


def test_predict_register_signs_and_refuses_a_bad_key(tmp_path, capsys):
    key, public = _keys(tmp_path, capsys)
    csv_path = tmp_path / "runs.csv"
    csv_path.write_text("flops,loss\n" + "".join(f"{c},{5 * c ** -0.05 + 1.5}\n" for c in np.logspace(12, 14, 5)))
    args = ["predict", csv_path, "--x", "flops", "--y", "loss", "--predict", "1e15", "--law", "log_linear", "--bootstrap", "20",
            "--register", "--ledger", tmp_path / "l.jsonl", "--sign-key"]
    code, _, err = _cli(capsys, *args, tmp_path / "l.jsonl.missing")
    assert code == 2 and "cannot read the signing key" in err and not (tmp_path / "l.jsonl").exists()
    code, _, err = _cli(capsys, *args, key.with_name("key.pub"))  # the public key by mistake
    assert code == 2 and "not an unencrypted PEM private key" in err
    code, out, err = _cli(capsys, *args, key)
    assert code == 0 and "(signed)" in out, err
    assert _cli(capsys, "ledger", "verify", tmp_path / "l.jsonl", "--public-key", public)[0] == 0


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_anchor(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / ".gitignore").write_text("forecasts/\n")  # anchoring works in an ignored forecast directory
    (repo / "other.txt").write_text("staged, not to be committed by the anchor")
    _git(repo, "add", "other.txt")
    ledger = repo / "forecasts" / "ledger.jsonl"
    _ledger(ledger, n=2)
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--git")
    assert code == 2 and "never committed" in err
    code, out, err = _cli(capsys, "ledger", "anchor", ledger)
    assert code == 0 and "committed head" in out, err
    committed = subprocess.run(["git", "show", "--name-only", "--format=", "HEAD"], cwd=repo,
                               capture_output=True, text=True).stdout.split()
    assert committed == ["forecasts/ledger.jsonl.head"]  # only the anchor; other.txt stays staged
    assert _cli(capsys, "ledger", "anchor", ledger)[1].find("already committed") > 0
    register(ledger, _entry(2.5))
    _cli(capsys, "ledger", "anchor", ledger)
    code, out, err = _cli(capsys, "ledger", "verify", ledger, "--git")
    assert code == 0 and "all 2 heads anchored in git are in it" in out, err

    _forge(ledger)
    code, _, err = _cli(capsys, "ledger", "verify", ledger)
    assert code == 0  # the rewrite passes on its own...
    code, _, err = _cli(capsys, "ledger", "verify", ledger, "--git")
    assert code == 2 and "anchored in git commit" in err  # ...not against the committed heads


def test_fit_on_a_binary_file_is_one_line_naming_it(tmp_path, capsys):
    for name, data in (("model.bin", bytes(range(256)) * 4), ("zeros.csv", b"flops,loss\n\x00\x00\x00\n")):
        path = tmp_path / name
        path.write_bytes(data)
        code, out, err = _cli(capsys, "fit", path, "--x", "flops", "--y", "loss")
        assert code == 2 and err.count("\n") == 1 and f"{path} is not a text CSV file" in err
