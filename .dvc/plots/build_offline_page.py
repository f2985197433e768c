"""Rebuilds offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

`dvc plots show/diff` fill `plots.html_template` (set in .dvc/config) and, without one,
load the chart libraries from a CDN, which leaves the page blank on a machine with no
network. Inlining the npm packages' minified builds makes every written page
self-contained, wherever `-o` puts it. Run from anywhere with npm on PATH:

    python .dvc/plots/build_offline_page.py

It downloads each pinned package with `npm pack`, refuses a build whose SHA-256 differs
from the one pinned here, and rewrites offline.html next to this file. To upgrade, change a
version, set its sha256 to "" to print the new hash, review, pin it, and update NOTICE.md.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE / "offline.html"

# (npm package, version, build inside the package, SHA-256 of that build)
LIBRARIES = (
    (
        "vega",
        "5.33.1",
        "build/vega.min.js",
        "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8",
    ),
    (
        "vega-lite",
        "5.23.0",
        "build/vega-lite.min.js",
        "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f",
    ),
    (
        "vega-embed",
        "6.29.0",
        "build/vega-embed.min.js",
        "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da",
    ),
)

# {refresh_tag} and {plot_divs} are DVC's placeholders. {scripts} is left out on purpose:
# DVC would fill it with the CDN <script> tags.
HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
"""

# SVG instead of vega-embed's default canvas: text stays selectable and a test can see the
# drawn marks and axis titles in the page's DOM.
SVG_BY_DEFAULT = """<script>
(function () {
    var embed = window.vegaEmbed;
    window.vegaEmbed = function (element, spec, options) {
        return embed(element, spec, Object.assign({renderer: "svg"}, options));
    };
})();
</script>
"""

TAIL = """</head>
<body>
    {plot_divs}
</body>
</html>
"""


def fetch_build(package: str, version: str, build: str, workdir: Path) -> str:
    """The build file's text from the npm registry's tarball of package@version."""
    subprocess.run(
        ["npm", "pack", "--silent", f"{package}@{version}"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tarfile.open(workdir / f"{package}-{version}.tgz") as tarball:
        member = tarball.extractfile(f"package/{build}")
        if member is None:
            raise SystemExit(f"{package}@{version} has no {build}")
        return member.read().decode("utf-8")


def checked(package: str, version: str, text: str, expected_sha256: str) -> None:
    """Stops unless `text` has the pinned hash and cannot end the inline <script> early."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest != expected_sha256:
        raise SystemExit(f"{package}@{version}: sha256 {digest}, pinned {expected_sha256!r}")
    for marker in ("</script", "<!--", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if marker in text:
            raise SystemExit(f"{package}@{version} contains {marker!r}; it cannot be inlined")


def inline_script(package: str, version: str, build: str, sha256: str, text: str) -> str:
    provenance = f"npm {package}@{version} {build}, BSD-3-Clause, sha256 {sha256}"
    return f"<!-- {provenance} -->\n<script>\n{text}\n</script>\n"


def main() -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as workdir:
        for package, version, build, sha256 in LIBRARIES:
            text = fetch_build(package, version, build, Path(workdir))
            checked(package, version, text, sha256)
            scripts.append(inline_script(package, version, build, sha256, text))
    PAGE.write_text(HEAD + "".join(scripts) + SVG_BY_DEFAULT + TAIL, encoding="utf-8")
    print(f"wrote {PAGE} ({PAGE.stat().st_size // 1024} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
