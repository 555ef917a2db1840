"""The README's code stays true: every python block marked runnable runs as written.

Convention (CONTRIBUTING.md, "README snippets"): the line before a fenced python block is one of

* ``<!-- runnable -->``: the block runs on its own, in a fresh namespace;
* ``<!-- runnable: continues -->``: the block continues the previous runnable block (its names and
  imports), as the prose around it says;
* ``<!-- not runnable: why -->``: the block is an excerpt or needs what a test cannot have.

A fresh namespace holds three stand-ins for the reader's own model and data: ``model`` (a small CNN
with a batch norm, eval mode, 10 classes), ``images`` (8 images of 3x32x32 in [0, 1]) and ``labels``
(8 class indices). Blocks must import everything else themselves. They run in order, in one child
process (the blocks register colour maps and change global state), whose working directory holds
``runs/clever_hans/digits/version_0``: a run written by ``LRPCallback`` over 3 epochs, in the layout of
the run that ``make demo`` writes. A line ``print(expr)  # literal`` also checks what it prints.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNABLE = "<!-- runnable -->"
CONTINUES = "<!-- runnable: continues -->"
NOT_RUNNABLE = re.compile(r"<!-- not runnable: (\S.*) -->")
# Where the generated run lies, relative to the blocks' working directory: what `make demo` writes.
RUN_DIR = Path("runs/clever_hans/digits/version_0")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """A fenced python block of a Markdown file."""

    line: int  # 1-based line of the block's first code line
    code: str
    marker: str  # the line before the fence, stripped ("" when there is none)

    @property
    def runnable(self) -> bool:
        return self.marker in (RUNNABLE, CONTINUES)

    @property
    def continues(self) -> bool:
        return self.marker == CONTINUES


def python_blocks(text: str) -> list[Block]:
    """Every ```` ```python ```` block of ``text`` with its first code line and the marker line before it."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            marker = lines[index - 1].strip() if index else ""
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"README.md:{index + 1}: python block is never closed")
            blocks.append(Block(line=index + 2, code="\n".join(lines[index + 1 : end]) + "\n", marker=marker))
            index = end
        index += 1
    return blocks


def expected_prints(block: Block) -> list[tuple[int, str]]:
    """``(line, text)`` for each top-level ``print(...)  # literal`` line: what that print must write."""
    expected = []
    for offset, line in enumerate(block.code.splitlines()):
        match = re.fullmatch(r"print\(.*\)\s+#\s*(.+?)\s*", line)
        if match:
            try:
                value = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                continue  # a comment in words, not a printed value
            expected.append((block.line + offset, str(value)))
    return expected


# ------------------------------------------------------------------------------------------ parser


def test_parser_finds_blocks_markers_and_prints():
    text = "\n".join(
        [
            "# t",
            "<!-- runnable -->",
            "```python",
            "x = 1",
            "print(x)  # 1",
            "print(x)  # the value",
            "```",
            "```bash",
            "ls",
            "```",
            "<!-- not runnable: needs a GPU -->",
            "```python",
            "y = 2",
            "```",
        ]
    )
    first, second = python_blocks(text)
    assert (first.line, first.code, first.runnable, first.continues) == (
        4,
        "x = 1\nprint(x)  # 1\nprint(x)  # the value\n",
        True,
        False,
    )
    assert expected_prints(first) == [(5, "1")]
    assert (second.line, second.runnable) == (13, False)
    assert NOT_RUNNABLE.fullmatch(second.marker).group(1) == "needs a GPU"
    with pytest.raises(ValueError, match="README.md:2: python block is never closed"):
        python_blocks("x\n```python\ny = 1\n")


def test_every_python_block_says_whether_it_runs():
    unmarked = [
        f"README.md:{block.line}"
        for block in python_blocks(README.read_text())
        if not block.runnable and not NOT_RUNNABLE.fullmatch(block.marker)
    ]
    assert not unmarked, (
        f"python blocks without a marker line before the fence: {unmarked}; put {RUNNABLE!r}, {CONTINUES!r} "
        "or '<!-- not runnable: <why> -->' on the line before ```python (CONTRIBUTING.md, README snippets)"
    )


# ------------------------------------------------------------------------------------------ the blocks run


RUNNABLE_BLOCKS = [block for block in python_blocks(README.read_text()) if block.runnable]


@pytest.fixture(scope="module")
def readme_results(tmp_path_factory) -> dict[int, dict]:
    """Run every runnable block in one child process; per block line: ``{"error": ..., "stdout": ...}``."""
    workdir = tmp_path_factory.mktemp("readme")
    report = workdir / "report.json"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [sys.executable, __file__, str(workdir), str(report)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0 and report.exists(), (
        f"README runner failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return {int(line): result for line, result in json.loads(report.read_text()).items()}


def test_readme_has_runnable_blocks():
    assert len(RUNNABLE_BLOCKS) >= 8
    assert not RUNNABLE_BLOCKS[0].continues, "the first runnable block has nothing to continue"


@pytest.mark.slow  # about 25 s of CPU for all blocks together: three small fits, an analysis
@pytest.mark.parametrize("block", RUNNABLE_BLOCKS, ids=lambda block: f"README.md:{block.line}")
def test_runnable_block_runs(block: Block, readme_results):
    result = readme_results[block.line]
    assert result["error"] is None, f"README.md:{block.line} raised:\n{result['error']}"
    printed = result["stdout"].replace("\r", "\n").splitlines()
    position = 0
    for line, text in expected_prints(block):
        assert text in printed[position:], f"README.md:{line} should print {text!r}; the block printed {printed[-20:]}"
        position = printed.index(text, position) + 1


# ------------------------------------------------------------------------------------------ child process


def _stand_ins() -> dict:
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    ).eval()
    images = torch.rand(8, 3, 32, 32, generator=generator)
    return {"model": model, "images": images, "labels": torch.arange(8) % 10}


def _write_demo_like_run(workdir: Path) -> None:
    """A run of ``LRPCallback`` over 3 epochs at ``RUN_DIR`` (tiny CNN, 60 probe samples, ids 0..59)."""
    sys.path.insert(0, str(ROOT / "tests" / "callbacks"))
    from callback_testing import ImageData, TinyNet, loader, trainer

    from lrp_lightning import LRPCallback

    callback = LRPCallback(num_samples=60, composite_kwargs={"low": 0.0, "high": 1.0}, log_images=0)
    fit = trainer(workdir / RUN_DIR.parent, max_epochs=3, callbacks=[callback])
    fit.fit(TinyNet(), loader(ImageData(120, seed=1), shuffle=True), loader(ImageData(60, seed=2)))
    assert Path(fit.log_dir).resolve() == (workdir / RUN_DIR).resolve()


def _run_blocks(workdir: Path, report: Path) -> None:
    import contextlib
    import io
    import time
    import traceback

    os.chdir(workdir)
    _write_demo_like_run(workdir)
    results, namespace = {}, {}
    for block in RUNNABLE_BLOCKS:
        if not block.continues:
            namespace = {"__name__": "__readme__", **_stand_ins()}
        # Padding keeps README line numbers in tracebacks.
        code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
        stdout = io.StringIO()
        error, start = None, time.perf_counter()
        try:
            with contextlib.redirect_stdout(stdout):
                exec(code, namespace)
        except BaseException:  # reported as that block's failure, not swallowed
            error = traceback.format_exc()
        seconds = time.perf_counter() - start  # reported by `python tests/test_readme.py DIR REPORT`, not asserted
        results[block.line] = {"error": error, "stdout": stdout.getvalue(), "seconds": round(seconds, 2)}
    report.write_text(json.dumps(results))


if __name__ == "__main__":
    _run_blocks(Path(sys.argv[1]), Path(sys.argv[2]))


# ------------------------------------------------------------------------------------------ demo output


def _output_script():
    spec = importlib.util.spec_from_file_location("update_readme_output", ROOT / "scripts" / "update_readme_output.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _document(body: str, start: str, end: str) -> str:
    return f"# Title\n\nIt prints:\n\n{start}\n{body}{end}\n\n- after\n"


def test_demo_output_block_is_replaced_between_the_markers():
    script = _output_script()
    text = _document("```\nold line\n```\n", script.START, script.END)
    updated = script.replace_block(text, "\nfirst line   \n  indented\n\n")
    assert updated == _document("```\nfirst line\n  indented\n```\n", script.START, script.END)
    assert script.replace_block(updated, "first line\n  indented\n") == updated  # a second run changes nothing
    # Markers may sit between an unfenced placeholder too (the first time).
    assert script.replace_block(_document("", script.START, script.END), "x") == _document(
        "```\nx\n```\n", script.START, script.END
    )


@pytest.mark.parametrize(
    ("body", "output", "message"),
    [
        ("missing-start", "x", "exactly once, found 0"),
        ("twice", "x", "exactly once, found 2"),
        ("reversed", "x", "comes before"),
        ("ok", "```\nx", "code fence"),
        ("ok", " \n\n", "empty"),
    ],
)
def test_demo_output_block_refuses_bad_markers_and_output(body, output, message):
    script = _output_script()
    text = {
        "missing-start": f"a\n```\nx\n```\n{script.END}\n",
        "twice": _document("", script.START, script.END) + f"{script.START}\n",
        "reversed": f"{script.END}\n```\nx\n```\n{script.START}\n",
        "ok": _document("```\nx\n```\n", script.START, script.END),
    }[body]
    with pytest.raises(ValueError, match=message):
        script.replace_block(text, output)


def test_readme_demo_block_sits_between_the_markers():
    script = _output_script()
    text = README.read_text()
    lines = text.splitlines()
    first, last = lines.index(script.START), lines.index(script.END)
    assert lines[first + 1] == "```" and lines[last - 1] == "```" and last - first > 3
    current = "\n".join(lines[first + 2 : last - 1])
    assert script.replace_block(text, current) == text  # the script would leave it as it is


def test_update_script_runs_the_demo_in_a_fresh_directory_and_rewrites(tmp_path, monkeypatch, capsys):
    script = _output_script()
    demo = tmp_path / "demo.py"
    # A stand-in demo: prints its arguments and whether its working directory started empty.
    demo.write_text(
        "import os, sys\n"
        "print('args:', ' '.join(sys.argv[1:]))\n"
        "print('fresh directory:', os.listdir('.') == [])\n"
        "sys.exit(int(os.environ.get('DEMO_EXIT', '0')))\n"
    )
    monkeypatch.setattr(script, "DEMO", demo)
    readme = tmp_path / "README.md"
    original = _document("```\nold\n```\n", script.START, script.END)
    readme.write_text(original)

    assert script.main(["--readme", str(readme), "--demo-args", "--fast", "--seed", "1"]) == 0
    expected = "```\nargs: --out runs/clever_hans --fast --seed 1\nfresh directory: True\n```\n"
    assert readme.read_text() == _document(expected, script.START, script.END)
    assert script.main(["--readme", str(readme), "--from-file", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt" in capsys.readouterr().err

    readme.write_text(original)
    monkeypatch.setenv("DEMO_EXIT", "1")
    assert script.main(["--readme", str(readme)]) == 1
    assert "the demo exited with 1; README.md was not changed" in capsys.readouterr().err
    assert readme.read_text() == original


def test_update_script_rewrites_the_text_demo_block_between_its_own_markers(tmp_path, monkeypatch):
    script = _output_script()
    demo = tmp_path / "text_demo.py"
    demo.write_text("import sys\nprint('args:', ' '.join(sys.argv[1:]))\n")
    monkeypatch.setattr(script, "TEXT_DEMO", demo)
    readme = tmp_path / "README.md"
    digits = _document("```\ndigits\n```\n", script.START, script.END)
    readme.write_text(digits + _document("", script.TEXT_START, script.TEXT_END))
    assert script.main(["--readme", str(readme), "--demo", "text", "--demo-args", "--fast"]) == 0
    expected = "```\nargs: --out runs/text_shortcut --fast\n```\n"
    assert readme.read_text() == digits + _document(expected, script.TEXT_START, script.TEXT_END)
    # the README holds the text demo's markers once each, around its generated output
    assert README.read_text().count(script.TEXT_START) == 1 and README.read_text().count(script.TEXT_END) == 1
