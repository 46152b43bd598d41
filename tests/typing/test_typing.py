"""The typing suite: mypy (strict, exhaustive-match) and basedpyright (strict)
must accept every valid program in `tests/typing/cases/pass/` and reject every
invalid one in `tests/typing/cases/fail/`, with exactly the errors they announce.

Design note. A failing case marks each line that must be rejected with a
trailing `# E: <part of the mypy message>` (several markers for several
errors on one line), and, where pyright words it differently, `# P: <part of
pyright's message>` (pyright's expectations for that line, replacing the
`# E:` texts). A case passes when the checker reports exactly one error per
marker on exactly those lines, each containing its marker's text, and no
error anywhere else; under pyright, the "type is unknown" and "expression is
unused" reports that follow from an error already announced are tolerated in
failing cases (strict pyright repeats itself). Each checker runs once, over
every case together (mypy with the project's mypy.ini and a cache of its own,
basedpyright with `[tool.basedpyright]` of pyproject.toml); each case is then
its own test. A `# P:` marker on a line without `# E:` is a known divergence
(pyright rejects what mypy accepts): the README of the cases lists them.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen
from mypy import api as mypy_api

from pachytype import Address, CancelTimer, Envelope

ROOT = Path(__file__).resolve().parent.parent.parent
CASES = Path(__file__).resolve().parent / "cases"
PASS = sorted((CASES / "pass").glob("*.py"))
FAIL = sorted((CASES / "fail").glob("*.py"))

_MARKER = re.compile(r"#\s*E:\s*(.*?)\s*(?=#\s*[EP]:|$)")
_PYRIGHT_MARKER = re.compile(r"#\s*P:\s*(.*?)\s*(?=#\s*[EP]:|$)")
# What strict pyright adds after an error it already reported (an unknown type
# flows on, a broken expression is "unused"): tolerated in failing cases.
_CASCADE = frozenset(
    {
        "reportUnknownMemberType",
        "reportUnknownVariableType",
        "reportUnknownArgumentType",
        "reportUnknownParameterType",
        "reportUnusedExpression",
        "reportUntypedFunctionDecorator",
    }
)
_REPORT = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+):(?:\d+:)? (?P<kind>error|note): (?P<text>.*)$"
)


@frozen
class Report:
    """One mypy message: the file (relative to the project root), line, text."""

    path: str
    line: int
    text: str
    rule: str = ""
    """pyright's rule (`reportArgumentType`); empty for mypy."""


@frozen(repr=False)
class Run:
    """The outcome of the single run of one checker over every case."""

    errors: tuple[Report, ...]
    stdout: str
    stderr: str
    status: int

    def __repr__(self) -> str:
        return f"<mypy run: status {self.status}, {len(self.errors)} errors>"


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def run_mypy() -> Run:
    """mypy over every case at once (the cases import the examples, which are
    checked along: an error there is reported by its own test)."""
    # Paths in mypy's report, and the search path for `examples`, are relative
    # to the working directory: run from the project root wherever pytest runs.
    with contextlib.chdir(ROOT):
        stdout, stderr, status = mypy_api.run(
            [
                "--config-file",
                str(ROOT / "mypy.ini"),
                "--cache-dir",
                str(ROOT / ".mypy_cache" / "typing_cases"),
                "--show-column-numbers",
                "--hide-error-context",
                "--no-error-summary",
                "--no-pretty",
                *(relative(path) for path in PASS + FAIL),
            ]
        )
    errors = []
    for line in stdout.splitlines():
        match = _REPORT.match(line)
        if match and match["kind"] == "error":
            errors.append(Report(match["path"], int(match["line"]), match["text"]))
    return Run(tuple(errors), stdout, stderr, status)


@cache
def run_pyright() -> Run:
    """basedpyright (strict, pyproject.toml's settings) over every case at once."""
    executable = Path(sys.executable).parent / "basedpyright"
    with contextlib.chdir(ROOT):
        result = subprocess.run(
            [str(executable), "--outputjson", *(relative(path) for path in PASS + FAIL)],
            capture_output=True,
            text=True,
            check=False,
        )
    errors = []
    if result.stdout.strip().startswith("{"):
        for item in json.loads(result.stdout)["generalDiagnostics"]:
            if item["severity"] == "error":
                path = relative(Path(item["file"]))
                line = int(item["range"]["start"]["line"]) + 1
                errors.append(Report(path, line, item["message"], item.get("rule", "")))
    return Run(tuple(errors), result.stdout, result.stderr, result.returncode)


@pytest.fixture(scope="module")
def pyright_run() -> Run:
    run = run_pyright()
    assert run.status in (0, 1), f"basedpyright did not run (status {run.status}):\n{run.stderr}"
    return run


@pytest.fixture(scope="module")
def mypy_run() -> Run:
    run = run_mypy()
    # 0: clean, 1: errors found; anything else is mypy failing to run at all.
    assert run.status in (0, 1), f"mypy did not run (status {run.status}):\n{run.stderr}"
    return run


def expectations(path: Path, pyright: bool = False) -> dict[int, list[str]]:
    """Line number -> the message parts its markers expect: `# E:` for mypy;
    for pyright, `# P:` where the line has some, else `# E:`."""
    expected: dict[int, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if pyright and "# P:" in line:
            expected[number] = _PYRIGHT_MARKER.findall(line[line.index("# P:") :])
        elif "# E:" in line:
            expected[number] = _MARKER.findall(line[line.index("# E:") :])
    return expected


def mismatches(path: Path, errors: tuple[Report, ...]) -> list[str]:
    """Every way mypy's errors for `path` differ from its markers, for people."""
    return compare(expectations(path), [e for e in errors if e.path == relative(path)])


def pyright_mismatches(path: Path, errors: tuple[Report, ...]) -> list[str]:
    """Every way pyright's errors for `path` differ from its markers, for people."""
    mine = [e for e in errors if e.path == relative(path)]
    tolerated = _CASCADE if path in FAIL else frozenset[str]()
    return compare(expectations(path, pyright=True), mine, tolerated)


def compare(
    expected: dict[int, list[str]], errors: list[Report], tolerated: frozenset[str] = frozenset()
) -> list[str]:
    """Each marker must match its own error on its line; no error may be left over
    (but those of a `tolerated` rule)."""
    got: defaultdict[int, list[str]] = defaultdict(list)
    for error in errors:
        got[error.line].append(error.text)
    problems = []
    for line in sorted(set(got) | set(expected)):
        unmatched = list(got.get(line, []))
        for want in expected.get(line, []):
            found = next((text for text in unmatched if want in text), None)
            if found is None:
                problems.append(f"line {line}: expected an error containing {want!r}")
            else:
                unmatched.remove(found)
        rules = {e.text: e.rule for e in errors if e.line == line}
        problems.extend(
            f"line {line}: unexpected error: {text}"
            for text in unmatched
            if rules.get(text, "") not in tolerated
        )
    return problems


def test_markers_are_read_one_per_expected_error(tmp_path: Path) -> None:
    case = tmp_path / "case.py"
    case.write_text("x = 1\ny: str = 2  # E: Incompatible types  # E: second one\nz()  # E: z\n")
    assert expectations(case) == {2: ["Incompatible types", "second one"], 3: ["z"]}


def test_the_comparison_reports_missing_unexpected_and_surplus_errors() -> None:
    expected = {2: ["Incompatible types"], 5: ["has no attribute"]}
    exact = [
        Report("c.py", 2, "Incompatible types in assignment"),
        Report("c.py", 5, "has no attribute"),
    ]
    assert compare(expected, exact) == []
    assert compare(expected, exact[:1]) == [
        "line 5: expected an error containing 'has no attribute'"
    ]
    assert compare(expected, [*exact, Report("c.py", 5, "another")]) == [
        "line 5: unexpected error: another"
    ]
    assert compare(expected, [*exact, Report("c.py", 9, "stray")]) == [
        "line 9: unexpected error: stray"
    ]
    # One error cannot satisfy two markers on its line.
    assert compare({2: ["Incompatible", "Incompatible"]}, exact[:1]) == [
        "line 2: expected an error containing 'Incompatible'"
    ]


def test_pyright_markers_replace_mypy_s_on_their_line(tmp_path: Path) -> None:
    case = tmp_path / "case.py"
    case.write_text("f(1)  # E: mypy words  # P: pyright words  # P: more\ng()  # E: same\n")
    assert expectations(case) == {1: ["mypy words"], 2: ["same"]}
    assert expectations(case, pyright=True) == {1: ["pyright words", "more"], 2: ["same"]}


def test_pyright_cascades_are_tolerated_only_when_asked() -> None:
    errors = [
        Report("c.py", 3, "Cannot access attribute", "reportAttributeAccessIssue"),
        Report("c.py", 3, "Type of x is unknown", "reportUnknownMemberType"),
    ]
    expected = {3: ["Cannot access attribute"]}
    assert compare(expected, errors, _CASCADE) == []
    assert compare(expected, errors) == ["line 3: unexpected error: Type of x is unknown"]


def test_case_names_are_unique_so_mypy_sees_one_module_each() -> None:
    stems = [path.stem for path in PASS + FAIL]
    assert len(stems) == len(set(stems)), f"two cases share a file name: {sorted(stems)}"


@pytest.mark.parametrize("path", PASS, ids=[path.stem for path in PASS])
def test_valid_program_type_checks(path: Path, mypy_run: Run) -> None:
    problems = mismatches(path, mypy_run.errors)
    assert not problems, f"{relative(path)} must type-check clean:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", FAIL, ids=[path.stem for path in FAIL])
def test_invalid_program_is_rejected_with_the_expected_errors(path: Path, mypy_run: Run) -> None:
    assert expectations(path), f"{relative(path)} has no `# E:` marker: nothing is checked"
    problems = mismatches(path, mypy_run.errors)
    assert not problems, f"{relative(path)}: mypy's errors differ:\n" + "\n".join(problems)


def test_no_errors_outside_the_cases(mypy_run: Run) -> None:
    cases = {relative(path) for path in PASS + FAIL}
    elsewhere = [e for e in mypy_run.errors if e.path not in cases]
    assert not elsewhere, "\n".join(f"{e.path}:{e.line}: {e.text}" for e in elsewhere)


def test_mypy_rejects_every_invalid_program(
    mypy_run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    marked = sum(len(parts) for path in FAIL for parts in expectations(path).values())
    missed = [
        f"{relative(path)}: {problem}"
        for path in FAIL
        for problem in mismatches(path, mypy_run.errors)
        if "expected an error" in problem
    ]
    programs = sum(1 for path in FAIL if not mismatches(path, mypy_run.errors))
    with capsys.disabled():
        print(
            f"\ntyping suite: mypy rejected {marked - len(missed)} of {marked} invalid "
            f"statements; {programs} of {len(FAIL)} invalid programs rejected exactly as "
            f"expected; {len(PASS)} valid programs"
        )
    assert not missed, "mypy did not report these expected errors:\n" + "\n".join(missed)


@pytest.mark.parametrize("path", PASS, ids=[path.stem for path in PASS])
def test_valid_program_type_checks_under_pyright(path: Path, pyright_run: Run) -> None:
    problems = pyright_mismatches(path, pyright_run.errors)
    assert not problems, f"{relative(path)} must be pyright-clean:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", FAIL, ids=[path.stem for path in FAIL])
def test_invalid_program_is_rejected_by_pyright_too(path: Path, pyright_run: Run) -> None:
    problems = pyright_mismatches(path, pyright_run.errors)
    assert not problems, f"{relative(path)}: pyright's errors differ:\n" + "\n".join(problems)


def test_pyright_gives_mypy_s_verdicts(
    pyright_run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every statement mypy rejects, pyright rejects; every valid program is
    pyright-clean but for the divergences its `# P:`-only lines declare."""
    rejected = {(e.path, e.line) for e in pyright_run.errors}
    statements = [(relative(path), line) for path in FAIL for line in expectations(path)]
    missed = [f"{path}:{line}" for path, line in statements if (path, line) not in rejected]
    exact = sum(1 for path in FAIL if not pyright_mismatches(path, pyright_run.errors))
    divergent = [
        f"{relative(path)}:{line}"
        for path in PASS
        for line in expectations(path, pyright=True)
        if line not in expectations(path)
    ]
    clean = sum(1 for path in PASS if not any(e.path == relative(path) for e in pyright_run.errors))
    with capsys.disabled():
        print(
            f"\ntyping suite: basedpyright rejected {len(statements) - len(missed)} of "
            f"{len(statements)} lines mypy rejects; {exact} of {len(FAIL)} invalid "
            f"programs rejected exactly as expected; {clean} of {len(PASS)} valid programs "
            f"clean (known divergences: {', '.join(divergent) or 'none'})"
        )
    assert not missed, "pyright accepts what mypy rejects:\n" + "\n".join(missed)


def test_what_mypy_refuses_to_build_by_hand_is_refused_at_run_time_too() -> None:
    class Forged(Envelope[int]):
        to: Any = None
        message: Any = None
        delay: Any = timedelta()
        timer_key: Any = None

        def after(self, delay: timedelta, *, key: str | None = None) -> Envelope[int]:
            return self

    class ForgedCancel(CancelTimer):
        to: Any = None
        key: Any = "k"

    key: Any = object()
    with pytest.raises(TypeError, match=r"Envelope cannot be built directly: use the generated"):
        Forged(_key=key)
    with pytest.raises(TypeError, match=r"CancelTimer cannot be built directly: use address"):
        ForgedCancel(_key=key)
    with pytest.raises(TypeError, match=r"Address cannot be built directly: use the generated"):
        Address("counter", "c", _key=key)
