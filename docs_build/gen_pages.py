"""mkdocs-gen-files script: the pages generated at build time (nothing of it is committed).

- reference/configuration.md from conf/ (docs_build/conf_reference.py);
- study/ from experiments/ as `make report` leaves it (docs_build/study_pages.py).
"""

import sys
from pathlib import Path

import mkdocs_gen_files

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs_build"))

from conf_reference import missing_descriptions, render  # noqa: E402
from study_pages import study_files  # noqa: E402

missing = missing_descriptions(REPO / "conf")
if missing:  # the build fails rather than publish an undescribed key
    raise SystemExit(
        "conf/ keys without a description (add a `# ...` comment):\n  " + "\n  ".join(missing)
    )

with mkdocs_gen_files.open("reference/configuration.md", "w") as page:
    page.write(render(REPO / "conf"))
mkdocs_gen_files.set_edit_path("reference/configuration.md", "../conf/")

for path, content in study_files(REPO / "experiments"):
    with mkdocs_gen_files.open(path, "wb") as file:
        file.write(content)
