"""The frontend's modules in one module (tb_plugin/bundle.py, the ``/bundle.js`` route): it holds every
module, each after the modules it imports, and behaves as the modules do. The browser tests open the
tab in TensorBoard, which loads the bundle; the standalone index.html still loads the sources."""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_testing import PREFIX, make_app  # noqa: E402

from lrp_lightning.tb_plugin.bundle import BundleError, bundle, bundled_modules  # noqa: E402
from lrp_lightning.tb_plugin.plugin import STATIC_DIR  # noqa: E402

NODE = shutil.which("node")
IMPORTS = re.compile(r'^import\s+(?:[^"]*?\s+from\s+)?"([^"]+)";', re.M)


def sources() -> set[str]:
    """Every module of the frontend but boot.js (which only starts index.js in the standalone page)."""
    return {path.relative_to(STATIC_DIR).as_posix() for path in STATIC_DIR.rglob("*.js")} - {"boot.js"}


def test_the_bundle_holds_every_module_after_the_modules_it_imports():
    order = bundled_modules(STATIC_DIR)
    assert sorted(order) == sorted(sources()) and order[-1] == "index.js"
    text = bundle(STATIC_DIR)
    for position, module in enumerate(order):
        source = (STATIC_DIR / module).read_text(encoding="utf-8")
        for target in IMPORTS.findall(source):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(module), target))
            assert order.index(resolved) < position, (module, resolved)
        assert f"// ---- {module}\n" in text
        # the module's code is there, its import and export keywords aside
        body = [
            line for line in source.splitlines() if line.strip() and not line.startswith(("import", "export", "}", " "))
        ]
        assert all(line in text for line in body), module
    assert text.rstrip().endswith('export const { render } = __lrp_modules["index.js"];')


def test_the_plugin_serves_the_bundle_as_the_tabs_module(tmp_path):
    client, _ = make_app(tmp_path)
    response = client.get(f"{PREFIX}/bundle.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.get_data(as_text=True) == bundle(STATIC_DIR)
    assert client.post(f"{PREFIX}/bundle.js").status_code == 405
    # revalidated on every load (no-cache), answered without a body while the browser holds this build
    assert "no-cache" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    again = client.get(f"{PREFIX}/bundle.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    other = client.get(f"{PREFIX}/bundle.js", headers={"If-None-Match": '"an-older-build"'})
    assert other.status_code == 200 and other.get_data(as_text=True) == bundle(STATIC_DIR)


@pytest.mark.skipif(NODE is None, reason="needs node to parse JavaScript")
def test_the_real_bundle_is_valid_javascript(tmp_path):
    (tmp_path / "bundle.mjs").write_text(bundle(STATIC_DIR))
    checked = subprocess.run([NODE, "--check", str(tmp_path / "bundle.mjs")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.mark.skipif(NODE is None, reason="needs node to run JavaScript")
def test_imports_exports_and_the_order_of_side_effects_behave_as_modules(tmp_path):
    folder = write(
        tmp_path / "static",
        {
            "log.js": "export const seen = [];\n",
            "a.js": 'import { seen } from "./log.js";\nseen.push("a");\nexport const A = 1;\n'
            "export function twice(x) { return 2 * x; }\nexport class Box { constructor(v) { this.v = v; } }\n",
            "views/b.js": 'import { seen } from "../log.js";\nimport {\n  twice as double,\n  A,\n} from "../a.js";\n'
            'seen.push("b");\nconst local = double(A) + 1;\nexport default { value: local };\n',
            "index.js": 'import "./a.js";\nimport b from "./views/b.js";\nimport { Box } from "./a.js";\n'
            'import { seen } from "./log.js";\nexport async function render() { return [b.value, new Box(4).v, seen,'
            " new URL('.', import.meta.url).pathname.endsWith('/')]; }\n",
        },
    )
    assert bundled_modules(folder) == ["log.js", "a.js", "views/b.js", "index.js"]
    (folder / "bundle.mjs").write_text(bundle(folder))
    script = "import('./bundle.mjs').then(async (m) => console.log(JSON.stringify(await m.render())));"
    ran = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=folder, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    # each module ran once, a.js before b.js; default, renamed and class imports resolve
    assert ran.stdout.strip() == '[3,4,["a","b"],true]'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"index.js": 'import { a } from "./a.js";\n', "a.js": 'import "./index.js";\nexport const a = 1;\n'}, "cycle"),
        ({"index.js": 'import { a } from "./gone.js";\n'}, "gone.js, which is missing"),
        ({"index.js": 'import { a } from "lodash";\n'}, "only relative paths"),
        ({"index.js": "const a = 1;\nexport { a };\n"}, "index.js line 2 has an import or export form"),
    ],
)
def test_forms_the_bundle_cannot_rewrite_are_named(tmp_path, files, message):
    with pytest.raises(BundleError, match=re.escape(message)):
        bundle(write(tmp_path, files))
