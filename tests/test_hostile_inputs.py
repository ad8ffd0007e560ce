"""Hostile input to the real CLI, one corpus per command: every case ends with its exit code, one
stderr line naming the key or file, no credential in anything printed or written, and nothing
written outside the roots (the test's own folder, the current directory being inside it).

The cases come from the hostile-input probe of issue 29 (items 1-3): credentials in each form
(URL userinfo, a secret query parameter, a value from the environment), paths outside
results_dir, and inputs that used to end in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from replicate.cli import main

PASSWORD = "S3cr3tPw"
API_KEY = "0123456789abcdef0123456789abcdef0fedcba9"   # shaped like a W&B API key
# Port 1 of the loopback: nothing listens, the connection is refused at once.
USERINFO_URL = f"postgresql+psycopg://zoo:{PASSWORD}@127.0.0.1:1/zoo"
QUERY_URL = f"postgresql+psycopg://zoo@127.0.0.1:1/zoo?password={PASSWORD}"
SSL_QUERY_URL = f"postgresql+psycopg://zoo@127.0.0.1:1/zoo?sslmode=require&sslpassword={PASSWORD}"


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd in a fresh folder; yields it. Files written there outside ``results`` are reported by
    :func:`outside` (the roots are results_dir and the inputs a case writes itself)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZOO_STORE_URL", raising=False)
    monkeypatch.delenv("ZOO_DATA_ROOT", raising=False)
    return tmp_path


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err[:600]!r}"
    return lines[0]


def _written_text(root: Path) -> str:
    """Everything under ``root`` as text (SQLite files too: bytes decoded leniently)."""
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


# 1. Credentials --------------------------------------------------------------------------------

# (form, overrides, environment): the same secret in each form a store URL can carry it.
SECRET_FORMS = {
    "userinfo": (["store=postgres"], {"ZOO_STORE_URL": USERINFO_URL}),
    "query-override": ([f"store.url={QUERY_URL}"], {}),
    "query-env": (["store=postgres"], {"ZOO_STORE_URL": QUERY_URL}),
    "sslpassword-env": (["store=postgres"], {"ZOO_STORE_URL": SSL_QUERY_URL}),
    # A value from a Secret that is not even a URL: echoing it would print the Secret itself.
    "env-not-a-url": (["store=postgres"], {"ZOO_STORE_URL": f"zoo:{PASSWORD}"}),
}


@pytest.mark.parametrize("command", ["history", "report", "cost"])
@pytest.mark.parametrize("form", sorted(SECRET_FORMS))
def test_a_read_command_on_an_unreachable_store_never_prints_its_credential(command, form, sandbox, capsys,
                                                                         monkeypatch):
    overrides, env = SECRET_FORMS[form]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = _cli([command, f"results_dir={sandbox / 'results'}", *overrides], capsys)
    line = _one_line(err)
    assert code == 2 and "store.url" in line
    assert PASSWORD not in out + err and PASSWORD not in _written_text(sandbox)


def test_a_run_on_an_unreachable_store_writes_its_credential_nowhere(sandbox, capsys, monkeypatch, tiny):
    monkeypatch.setenv("ZOO_STORE_URL", QUERY_URL)
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    results = sandbox / "results"
    code, out, err = _cli(["run", "model=yolov4", "scheduler=inline", "store=postgres", f"results_dir={results}",
                           *tiny], capsys)
    assert code == 2 and "store.url" in _one_line(err)
    assert not [s for s in (PASSWORD, API_KEY) if s in out + err + _written_text(sandbox)]


@pytest.mark.parametrize("override, names", [
    (f"store.url=postgresql+psycopg://zoo:{PASSWORD}@db/zoo", "store.existingSecret"),
    (f"store.url={QUERY_URL}", "store.existingSecret"),
    (f"+logger.api_key={API_KEY}", "wandb.apiKeySecret"),
])
def test_k8s_render_refuses_a_credential_in_an_override_instead_of_rendering_it(override, names, sandbox,
                                                                               capsys):
    code, out, err = _cli(["k8s", "render", "suite=smoke", override], capsys)
    line = _one_line(err)
    assert code == 2 and names in line and "Secret" in line
    assert PASSWORD not in out + err and API_KEY not in out + err


# 2. Paths outside results_dir ------------------------------------------------------------------


@pytest.mark.parametrize("override, key", [
    ("results_dir=", "results_dir"),
    ("results_dir={tmp}/no/such/parent", "results_dir"),
    ("results_dir={tmp}/a-file", "results_dir"),
    ("store.url=sqlite:///{tmp}/missing/dir/zoo.db", "store.url"),
])
@pytest.mark.parametrize("command", ["run", "history"])
def test_a_results_dir_or_store_folder_that_is_not_there_is_exit_2_and_nothing_is_created(
        command, override, key, sandbox, capsys, tiny):
    (sandbox / "a-file").write_text("not a folder")
    before = _tree(sandbox)
    root_db, root_data = Path("/zoo.db").exists(), Path("/data/shapes").exists()
    extra = ["model=yolov4", "scheduler=inline", *tiny] if command == "run" else []
    code, _, err = _cli([command, override.format(tmp=sandbox), *extra], capsys)
    line = _one_line(err)
    assert code == 2 and line.startswith(f"error: {key}")
    assert _tree(sandbox) == before
    assert (Path("/zoo.db").exists(), Path("/data/shapes").exists()) == (root_db, root_data)


@pytest.mark.parametrize("suite_id", ["..", ".", "...."])
def test_a_stored_suite_id_made_of_dots_never_names_a_folder(suite_id, sandbox, capsys):
    from replicate.store.results_store import ResultStore

    results = sandbox / "results"
    results.mkdir()
    with ResultStore(f"sqlite:///{results / 'zoo.db'}") as store:   # a crafted row: the CLI refuses such ids
        store.upsert_suite(suite_id, "smoke", {})
    before = _tree(sandbox)
    code, _, err = _cli(["report", f"results_dir={results}", "--suite-id", suite_id], capsys)
    line = _one_line(err)
    assert code == 2 and repr(suite_id) in line
    assert _tree(sandbox) == before


# 3. One line, never a traceback ----------------------------------------------------------------

GT = {"images": [{"id": 1, "width": 10, "height": 10}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}],
      "categories": [{"id": 1, "name": "a"}]}


def _detection(**change):
    return json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5, **change}])


@pytest.mark.parametrize("text, says", [
    (_detection(bbox="x"), "detection 0: bbox"),
    (_detection(score="high"), "detection 0: score"),
    (_detection(score=float("nan")), "detection 0: score"),
    (_detection(bbox=[0, 0, float("inf"), 5]), "detection 0: bbox"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
])
def test_evaluate_a_hostile_detections_file_is_exit_2_naming_the_file_and_the_detection(text, says, sandbox,
                                                                                        capsys):
    (sandbox / "gt.json").write_text(json.dumps(GT))
    (sandbox / "dt.json").write_text(text)
    code, _, err = _cli(["evaluate", "--annotations", "gt.json", "--detections", "dt.json"], capsys)
    line = _one_line(err)
    assert code == 2 and "dt.json" in line and says in line


def test_a_spool_file_too_deep_to_parse_is_set_aside_and_the_next_one_is_written(sandbox):
    from replicate.store import spool
    from replicate.store.results_store import ResultStore

    folder = sandbox / "results" / "spool"
    folder.mkdir(parents=True)
    (folder / "job-aaa.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "job-bbb.json").write_text("{" * 10)
    lines: list[str] = []
    with ResultStore(f"sqlite:///{sandbox / 'results' / 'zoo.db'}") as store:
        assert spool.drain(folder, store, lines.append) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["job-aaa.unreadable", "job-bbb.unreadable"]
    assert all("set aside" in line for line in lines) and len(lines) == 2


def test_k8s_render_a_set_that_is_not_yaml_is_exit_2_naming_the_set(sandbox, capsys):
    code, out, err = _cli(["k8s", "render", "--set", "image.tag=1\nrunAsUser: 0"], capsys)
    line = _one_line(err)
    assert code == 2 and "--set" in line and "image.tag" in line and not out


@pytest.mark.parametrize("option, value", [("stride", "0"), ("size", "-3"), ("filters", "99999999999999999999")])
def test_darknet_a_cfg_value_out_of_range_is_exit_2_naming_section_key_and_line(option, value, sandbox, capsys):
    options = {"filters": "8", "size": "3", "stride": "1", "pad": "1", "activation": "leaky", option: value}
    body = "\n".join(f"{k}={v}" for k, v in options.items())
    (sandbox / "bad.cfg").write_text(f"[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\n{body}\n")
    line_no = 7 + list(options).index(option)
    code, out, err = _cli(["darknet", "bad.cfg"], capsys)
    line = _one_line(err)
    assert code == 2 and f"bad.cfg:{line_no}" in line and f"[convolutional] {option}={value}" in line


@pytest.mark.parametrize("command", ["history", "run", "suite"])
def test_a_value_with_a_newline_gives_a_one_line_error(command, sandbox, capsys):
    code, _, err = _cli([command, "suite_id=a\nb"], capsys)
    assert code == 2 and "suite_id" in _one_line(err)


def test_an_exception_escaping_a_command_is_one_line_and_a_redacted_log(sandbox, capsys, monkeypatch):
    """A fault injected in a command (the CLI's last-resort handler is under test, not the
    command): one line, exit 1, the traceback in results_dir/logs without the credential."""
    import replicate.commands.history as history

    def broken(args):
        raise RuntimeError(f"cannot reach {USERINFO_URL}\nsecond line")

    monkeypatch.setattr(history, "run", broken)
    results = sandbox / "results"
    results.mkdir()
    code, _, err = _cli(["history", f"results_dir={results}"], capsys)
    line = _one_line(err)
    assert code == 1 and line.startswith("error: internal: RuntimeError: cannot reach") and "please report" in line
    logs = list((results / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback" in text and "broken" in text
    assert PASSWORD not in err + text


def test_stdout_closed_early_exits_quietly(sandbox):
    """``replicate models --json | head -0``: the reader is gone before the first write."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "replicate.cli", "models", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=sandbox)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == ""
