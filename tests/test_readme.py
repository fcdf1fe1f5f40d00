"""The README is a user's document: short, the two commands first, a Layout that matches the tree,
links that resolve, and the test command that CI runs."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 300


def readme() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def section(text: str, title: str) -> str:
    """The body of the `## title` section, up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def test_the_readme_is_at_most_300_lines():
    n = len(readme().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; at most {MAX_LINES}: long references go to docs/"


def test_the_readme_opens_with_the_two_commands():
    head = readme().splitlines()[:10]
    commands = [line.split("#")[0].strip() for line in head]
    assert "make demo" in commands and "make test" in commands, head


def test_every_folder_the_layout_names_exists():
    layout = section(readme(), "Layout")
    folders = sorted(set(re.findall(r"`([\w.\-/]+/)`", layout)))
    assert len(folders) >= 8, f"the Layout section names too few folders: {folders}"
    missing = [f for f in folders if not os.path.isdir(os.path.join(ROOT, f))]
    assert not missing, f"the Layout section names folders that do not exist: {missing}"


def test_the_layout_names_every_top_level_folder_of_the_product_and_the_lab():
    layout = section(readme(), "Layout")
    named = set(re.findall(r"`([\w.\-]+)/`", layout))
    top = {d for d in os.listdir(ROOT)
           if os.path.isdir(os.path.join(ROOT, d)) and not d.startswith((".", "_"))
           and d not in ("build", "shared") and not d.endswith(".egg-info") and _tracked_looking(d)}
    assert top <= named, f"top-level folders missing from the Layout section: {sorted(top - named)}"


def _tracked_looking(d: str) -> bool:
    """A folder of the repository, not a local virtual environment or cache."""
    return not os.path.exists(os.path.join(ROOT, d, "pyvenv.cfg"))


def test_every_docs_page_the_readme_links_exists():
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", readme()))
    assert links, "the README links no docs/ page"
    missing = sorted(link for link in links if not os.path.isfile(os.path.join(ROOT, link)))
    assert not missing, f"README links docs pages that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    pages = {f"docs/{f}" for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")}
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme()))
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_ci_runs_exactly_the_readmes_test_command():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    commands = [line for line in lines if line and not line.startswith("#")
                and not line.startswith("set ") and not line.startswith("cd ")]
    assert commands == ["make test"], commands
    assert "make test" in [line.split("#")[0].strip() for line in readme().splitlines()[:10]]


def test_the_readme_shows_one_command_per_job_never_a_list_of_hparams():
    for line in readme().splitlines():
        assert line.count("--hparam") <= 1, f"more than one --hparam on a README line: {line}"
