"""The README's claims that code can check: its example config is the shipped file and the defaults."""

from __future__ import annotations

from pathlib import Path

from simulations.config import default_config, load_config

ROOT = Path(__file__).resolve().parent.parent


def readme_block(language: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{language}\n") + len(f"```{language}\n")
    return text[start : text.index("```", start)]


def test_readme_example_config_is_examples_cluster_yaml():
    body = "".join(line + "\n" for line in (ROOT / "examples" / "cluster.yaml").read_text().splitlines()
                   if not line.startswith("#"))
    assert readme_block("yaml") == body


def test_example_config_spells_out_the_defaults():
    assert load_config(ROOT / "examples" / "cluster.yaml") == default_config()


def test_readme_gives_exactly_the_two_setup_commands_that_ci_runs():
    block = readme_block("bash")
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["./dev simulate", "./dev test"]
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()


def test_readme_forecasting_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    block = text.split("### One protocol", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert printed and printed in text  # the README quotes what it prints


def test_readme_prometheus_config_and_the_example_validate():
    import re

    import yaml

    from simulations.config import config_from_mapping, load_config

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Metrics from Prometheus"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    config = config_from_mapping(yaml.safe_load(block), "README.md")
    assert config.prometheus.headers == {"X-Scope-OrgID": "team-a"}
    assert config.workload_for("llm-chat").metrics.queries == {"kv_cache_usage": None}
    example = load_config(ROOT / "examples" / "prometheus.yaml")
    assert example.prometheus.url == "http://127.0.0.1:9090"
    assert example.workload_for("llm-chat").metrics.namespace == "serving"
