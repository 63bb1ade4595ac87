"""The README against the code it documents: the configuration table against the settings
object, the Makefile's help against its rules (issue 19: docs that cannot drift)."""

from __future__ import annotations

import re
from dataclasses import fields

from shared.settings import PREFIX, Settings
from tests.stack import ROOT

README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def _configuration_table() -> str:
    section = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def documented_variables() -> set[str]:
    return set(re.findall(r"`((?:AGENTSTREAM_)[A-Z0-9_]+)`", _configuration_table()))


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = {PREFIX + f.name.upper() for f in fields(Settings)} - documented_variables()
    assert not missing, f"settings missing from the README's configuration table: {sorted(missing)}"


def test_the_configuration_table_invents_no_setting() -> None:
    invented = documented_variables() - {PREFIX + f.name.upper() for f in fields(Settings)}
    assert not invented, f"the README documents variables that are not settings: {sorted(invented)}"


def test_every_make_target_has_a_rule_and_a_help_line() -> None:
    phony = set(re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split())
    helped = set(re.findall(r"^([a-z-]+):[^\n]*## ", MAKEFILE, re.M))
    assert phony == helped, f"declared without a rule and help: {sorted(phony - helped)}; " \
                            f"rules not declared: {sorted(helped - phony)}"


def test_the_readme_names_only_make_targets_that_exist() -> None:
    named = set(re.findall(r"`make ([a-z-]+)", README))
    rules = set(re.findall(r"^([a-z-]+):", MAKEFILE, re.M))
    assert named <= rules, f"the README names make targets that do not exist: {sorted(named - rules)}"
