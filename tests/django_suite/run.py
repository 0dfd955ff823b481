"""Run Django's own cache and session test suites against veneer's backends.

For each supported Django version this downloads Django's source distribution
(``pip download --no-binary :all: --no-deps "django==X.*"``) into a temporary
folder, adds four test modules to its ``tests/``, and runs them with Django's
``runtests.py`` (the downloaded Django first on ``sys.path``):

- ``BaseCacheTests`` on ``VeneerCache`` with the safe codec (the tests listed in
  ``exclusions.py`` run as expected failures: they must fail, and say why);
- ``BaseCacheTests`` on ``VeneerCache`` with the pickle opt-in (no exclusion);
- ``BaseCacheTests`` on Django's own ``RedisCache``, the reference, same Redis;
- ``SessionTestsMixin`` on ``veneer.integrations.django.sessions`` (PostgreSQL).

Redis is a private ``redis-server`` on a free port, stopped by PID. Nothing of
Django is kept. Exit status 1 when a test that is not excluded fails (the
reference's own results are reported, not judged), when an excluded test passes
(the list is stale) or when a suite did not run.

    python tests/django_suite/run.py [--versions 4.2,5.2,6.0] [--python312 auto|none|PATH]

Django 6.0 needs Python 3.12: it runs in a Python 3.12 virtualenv built for the
run (veneer installed from this checkout) when one is found, and is reported as
not run otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # tests/: servers.py

from servers import RedisServer  # noqa: E402

VERSIONS = ("4.2", "5.2", "6.0")
SUITES = ("safe", "pickle", "reference", "sessions")
SUITE_TIMEOUT = 240.0
# "test_x (cache.tests_veneer.SuiteCacheTests.test_x) [(key='v')][\nDocstring] ... ok"
LINE = re.compile(
    r"^\s*(?P<test>test\w*) \((?P<where>[\w.]+)\)(?: \((?P<sub>.*?)\))?(?:\n[^\n]*?)? \.\.\. "
    r"(?P<outcome>ok|FAIL|ERROR|expected failure|unexpected success"
    r"|skipped(?: '(?P<single>.*)'| \"(?P<double>.*)\")?)$",
    re.MULTILINE,
)


@dataclass
class Result:
    version: str
    suite: str
    command: str
    seconds: float = 0.0
    outcomes: dict[str, str] = field(default_factory=dict)  # test -> worst outcome
    reasons: dict[str, str] = field(default_factory=dict)
    ran: int = 0
    django: str = ""  # where runtests found Django: must be the downloaded one
    problem: str = ""
    output_tail: str = ""

    def count(self) -> Counter[str]:
        return Counter(self.outcomes.values())


_RANK = {"ok": 0, "skipped": 1, "expected failure": 2, "unexpected success": 3, "FAIL": 4}


def _worse(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if _RANK.get(a, 5) >= _RANK.get(b, 5) else b


def parse(result: Result, output: str) -> None:
    for match in LINE.finditer(output):
        outcome = match["outcome"]
        if outcome.startswith("skipped"):
            result.reasons[match["test"]] = match["single"] or match["double"] or ""
            outcome = "skipped"
        name = match["test"]
        result.outcomes[name] = _worse(result.outcomes.get(name), outcome)
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    result.ran = int(ran.group(1)) if ran else 0
    against = re.search(r"^Testing against Django installed in '(.*)'", output, re.MULTILINE)
    result.django = against.group(1) if against else ""


# ------------------------------------------------------------------ Django


def download(version: str, into: Path, python: str) -> Path:
    """Django ``version``'s sdist, unpacked into ``into``; returns its root."""
    target = into / f"dl-{version}"
    done = subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         f"django=={version}.*", "-d", str(target)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    archives = list(target.glob("*.tar.gz"))
    if done.returncode or not archives:
        raise RuntimeError(_pip_problem(done.stderr or done.stdout))
    with tarfile.open(archives[0]) as archive:
        archive.extractall(into / f"src-{version}", filter="data")
    (root,) = (into / f"src-{version}").iterdir()
    tests = root / "tests"
    shutil.copy(HERE / "cache_module.py", tests / "cache" / "tests_veneer.py")
    shutil.copy(HERE / "exclusions.py", tests / "cache" / "veneer_exclusions.py")
    shutil.copy(HERE / "session_module.py", tests / "sessions_tests" / "tests_veneer.py")
    shutil.copy(HERE / "suite_settings.py", tests / "veneer_settings.py")
    return root


def _pip_problem(text: str) -> str:
    needs = re.search(r"(\d+\.\d+\S*) Requires-Python (>=\s*[\d.]+)", text)
    if needs:
        return f"Django {needs.group(1)} requires Python {needs.group(2)}"
    lines = [line for line in text.splitlines() if line.startswith("ERROR")]
    return (lines[-1] if lines else text.strip()[-300:]) or "pip download failed"


def run_suite(root: Path, version: str, suite: str, redis_url: str, python: str) -> Result:
    label = "sessions_tests.tests_veneer" if suite == "sessions" else "cache.tests_veneer"
    args = [python, "runtests.py", label, "--parallel", "1", "-v", "2", "--noinput"]
    if suite == "sessions":
        args.append("--settings=veneer_settings")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO / "src")]),
        "VENEER_SUITE": suite,
        "VENEER_SUITE_REDIS": redis_url,
        # The reference's clear() is FLUSHDB: one database per version run at once.
        "VENEER_SUITE_REFERENCE_DB": str(1 + VERSIONS.index(version) if version in VERSIONS else 9),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    shown = f"cd <django-{version}>/tests && VENEER_SUITE={suite} " + " ".join(
        ["python", *args[1:]]
    )
    result = Result(version, suite, shown)
    started = time.monotonic()
    proc = subprocess.Popen(
        args, cwd=root / "tests", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # its own process group: runtests and nothing else
        output, _ = proc.communicate()
        result.problem = f"timed out after {SUITE_TIMEOUT:.0f} s"
    result.seconds = time.monotonic() - started
    parse(result, output)
    result.output_tail = output[-4000:]
    if not result.problem and (not result.outcomes or result.ran == 0):
        result.problem = f"no test ran (exit {proc.returncode})"
    if not result.problem and not result.django.startswith(str(root)):
        result.problem = f"ran against the Django in {result.django!r}, not the download"
    if not result.problem and len(result.outcomes) != result.ran:
        result.problem = f"parsed {len(result.outcomes)} results of {result.ran} tests"
    return result


# ----------------------------------------------------------------- verdict


def judge(results: list[Result], expected: dict[str, str]) -> list[str]:
    """What makes the run fail, one line each (empty: it passes)."""
    problems = []
    for r in results:
        where = f"Django {r.version} {r.suite}"
        if r.problem:
            problems.append(f"{where}: {r.problem}")
        if r.suite == "reference":
            continue
        failed = sorted(t for t, o in r.outcomes.items() if o in ("FAIL", "ERROR"))
        if failed:
            problems.append(f"{where}: failed {', '.join(failed)}")
        stale = sorted(t for t, o in r.outcomes.items() if o == "unexpected success")
        if stale:
            problems.append(f"{where}: excluded but passing (update exclusions.py): {stale}")
        if r.suite == "safe":
            excluded = {t for t, o in r.outcomes.items() if o == "expected failure"}
            missing = sorted(set(expected) - excluded - set(stale))
            if missing:
                problems.append(f"{where}: exclusions that did not run: {missing}")
    return problems


def table(results: list[Result]) -> str:
    rows = [
        "| Django | suite | backend | passed | failed | excluded | skipped by the suite "
        "| seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    backends = {
        "safe": "VeneerCache (msgpack)",
        "pickle": "VeneerCache (pickle opt-in)",
        "reference": "Django RedisCache",
        "sessions": "veneer sessions",
    }
    for r in results:
        c = r.count()
        failed = c["FAIL"] + c["ERROR"] + c["unexpected success"]
        kind = "SessionTestsMixin" if r.suite == "sessions" else "BaseCacheTests"
        rows.append(
            f"| {r.version} | {kind} | {backends[r.suite]} | {c['ok']} | {failed} | "
            f"{c['expected failure']} | {c['skipped']} | {r.seconds:.0f} |"
        )
    return "\n".join(rows)


# -------------------------------------------------------------------- main


def _python312(explicit: str | None) -> str | None:
    """A Python >= 3.12 that runs: the one given, else one found on PATH or under pyenv."""
    if explicit and explicit != "auto":
        return explicit
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.1[23]*/bin/python3.1[23]"))
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


def _venv312(python: str, into: Path) -> str:
    """A Python 3.12 virtualenv with veneer installed (Django 6.0 needs 3.12)."""
    venv = into / "venv312"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"{REPO}[django,postgres]"], check=True, timeout=600, capture_output=True)
    return str(venv / "bin" / "python")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument(
        "--python312",
        default="auto",
        help="a Python >= 3.12 for Django 6.0 ('auto': look on PATH and under pyenv; "
        "'none': do not run 6.0)",
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    versions = [v for v in args.versions.split(",") if v]
    suites = [s for s in args.suites.split(",") if s]
    sys.path.insert(0, str(HERE))
    from exclusions import SAFE_CODEC

    skipped: list[str] = []
    results: list[Result] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="veneer-django-suite-") as folder:
        tmp = Path(folder)
        roots: dict[str, tuple[Path, str]] = {}

        def prepare(version: str) -> None:
            python = sys.executable
            if int(version.split(".", maxsplit=1)[0]) >= 6 and sys.version_info < (3, 12):
                found = None if args.python312 == "none" else _python312(args.python312)
                if not found:
                    skipped.append(
                        f"Django {version}: requires Python >= 3.12, this is "
                        f"{sys.version.split()[0]} and no Python 3.12 was found "
                        "(pass --python312 PATH)"
                    )
                    return
                print(f"Django {version} requires Python >= 3.12: running it with {found}")
                python = _venv312(found, tmp)
            try:
                roots[version] = (download(version, tmp, python), python)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                skipped.append(f"Django {version}: {exc}")

        with ThreadPoolExecutor(max_workers=len(versions) or 1) as pool:
            list(pool.map(prepare, versions))
        server = RedisServer()
        try:
            jobs = [(v, s) for v in versions if v in roots for s in suites]
            base = f"redis://127.0.0.1:{server.port}"  # each suite picks its database
            with ThreadPoolExecutor(max_workers=8) as pool:  # the suites mostly sleep
                futures = [
                    pool.submit(run_suite, roots[v][0], v, s, base, roots[v][1]) for v, s in jobs
                ]
                results = [f.result() for f in futures]
        finally:
            server.stop()
    problems = judge(results, SAFE_CODEC)
    print(table(results))
    for line in skipped:
        print(f"not run: {line}")
    for r in results:
        print(f"command ({r.version}, {r.suite}): {r.command}")
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "results": [
                        {k: v for k, v in vars(r).items() if k != "output_tail"} for r in results
                    ],
                    "not_run": skipped,
                    "problems": problems,
                },
                indent=2,
            )
        )
    if problems:
        for r in results:
            if r.problem or any(o in ("FAIL", "ERROR") for o in r.outcomes.values()):
                print(f"--- output of Django {r.version} {r.suite} (tail) ---\n{r.output_tail}")
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
