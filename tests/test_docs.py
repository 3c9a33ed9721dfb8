"""The documentation covers the public API, and every tutorial runs its code at build time."""

import re
from pathlib import Path

import bayesplug as bp

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented() -> set[str]:
    return set(re.findall(r"^::: ([\w.]+)", (DOCS / "api.md").read_text(), re.M))


def test_every_public_name_is_in_the_api_reference():
    documented = _documented()
    missing = []
    names = [(bp, n) for n in bp.__all__ if n != "models"]
    names += [(bp.models, n) for n in bp.models.__all__]  # each model, not the package
    for namespace, name in names:
        obj = getattr(namespace, name)
        module = getattr(obj, "__module__", None) or obj.__name__
        full = obj.__name__ if name == "datasets" else f"{module}.{name}"
        if full not in documented and module not in documented:
            missing.append(full)
    assert missing == [], f"not in docs/api.md: {missing}"


def test_every_model_and_backend_has_a_tutorial_that_runs_its_code():
    pages = sorted(DOCS.glob("models/*.md")) + sorted(DOCS.glob("methods/*.md"))
    pages += [DOCS / "functional_tucker.md", DOCS / "gp_pde.md", DOCS / "getting_started.md"]
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    text = {page: page.read_text() for page in pages}
    for page, body in text.items():
        assert str(page.relative_to(DOCS)) in nav, f"{page} is not in the site's nav"
        assert 'exec="on"' in body, f"{page} runs no code at build time"
    titles = [body.split("\n")[0] for body in text.values()]
    for method in bp.list_backends():
        assert any(f"`{method}`" in title for title in titles), f"no tutorial for {method}"
    for model in bp.list_models():
        assert any(f"`{model}`" in t or model in str(p) for p, t in text.items()), model
