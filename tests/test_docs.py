"""The docs stand alone: nothing points at files outside this repository."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("shared/reference", "shared/seed", "peers.md", "paddleclas.md")


def test_no_references_to_files_outside_the_repository():
    files = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "hubconf.py", *REPO.glob("docs/*.md")]
    for pattern in (
        "src/**/*.py",
        "src/**/*.yaml",
        "src/**/*.md",
        "scripts/**/*.py",
        "tests/**/*.py",
        "deploy/**/*",
    ):
        files += [
            p for p in REPO.glob(pattern) if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".cpp", ".h", ".txt")
        ]
    me = Path(__file__).resolve()
    hits = [
        f"{p.relative_to(REPO)}: {needle}"
        for p in files
        if p.resolve() != me
        for needle in OUTSIDE
        if needle in p.read_text(errors="replace")
    ]
    assert not hits, hits


def test_the_seed_is_defined_for_a_reader():
    readme = (REPO / "README.md").read_text()
    assert '"The seed" in these docs is PaddleClas\'s Res2Net model page' in readme
    assert "PaddlePaddle/PaddleClas/blob/release/2.6/docs/zh_CN/models/ImageNet1k/Res2Net.md" in readme
