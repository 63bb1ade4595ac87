"""The README against the code it documents: the configuration table against the settings
object, the error table against the errors the service raises, the Makefile's help against its
rules (issue 19: docs that cannot drift). The samples are run in test_readme_samples.py."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from dataclasses import fields

from shared.errors import ApiError
from shared.settings import PREFIX, Settings
from shared.stores.messages import QUOTA_MESSAGES
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


# --- the error table against the errors the service can raise -----------------------------

SERVICE_PACKAGES = ("gateway", "shared", "dataplane", "intent")


def _error_classes() -> dict[str, int]:
    """Every ApiError subclass of the service, by name: each module is imported first, since a
    class defined next to its only use (gateway/routes/messages.py's AgentFailed) is otherwise
    unknown to ``__subclasses__`` until something imports it."""
    for package in SERVICE_PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            importlib.import_module(info.name)
    found: dict[str, int] = {}
    todo = [ApiError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found[sub.__name__] = sub.status
            todo.append(sub)
    return found


def _status_of_call(name: str, call: ast.Call, classes: dict[str, int]) -> int | None:
    """The HTTP status an error-making call produces, or None when it makes no API error."""
    if name in classes:
        return classes[name]
    if name == "TokenError":  # a stream token refused: gateway/auth.py raises it as 401
        return 401
    if name in ("error_response", "refusal") and call.args and isinstance(call.args[0], ast.Constant):
        return int(call.args[0].value)
    return None


def _code_of_call(name: str, call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "code":
            return kw.value
    position = {"error_response": 3, "refusal": 2}.get(name, 1)
    return call.args[position] if len(call.args) > position else None


# The calls whose code is not a literal, each resolved here (a new one fails the test below
# until it is added, so the table cannot miss what it makes).
DYNAMIC_CODES: dict[str, set[tuple[int, str]]] = {
    # gateway/errors.py: every ApiError (the literals found elsewhere) and Starlette's own
    "exc.code": set(),
    "code": {(404, "route_not_found"), (405, "method_not_allowed")},
    # shared/stores/messages.py: a session quota, one code per quota
    "f'quota_{code}'": {(403, f"quota_{q}") for q in QUOTA_MESSAGES},
    # gateway/routes/messages.py: `"stream": false` and the message ended with `error`: the
    # error event's own code passes through (the table says so), else this one
    "err.get('code') or 'agent_error'": {(500, "agent_error")},
}


def produced_error_codes() -> set[tuple[int, str]]:
    classes = _error_classes()
    produced: set[tuple[int, str]] = set()
    unresolved: list[str] = []
    for package in SERVICE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                status = _status_of_call(name, node, classes)
                if status is None and name not in ("error_response", "refusal"):
                    continue
                code = _code_of_call(name, node)
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(code, ast.Constant) and isinstance(code.value, str) and status is not None:
                    produced.add((status, code.value))
                elif code is not None and ast.unparse(code) in DYNAMIC_CODES:
                    produced |= DYNAMIC_CODES[ast.unparse(code)]
                else:
                    unresolved.append(f"{where}: {ast.unparse(node)[:120]}")
    assert not unresolved, "errors whose status or code the table test cannot tell (give them a literal " \
                           "code, or resolve them in DYNAMIC_CODES):\n" + "\n".join(unresolved)
    return produced


def documented_error_codes() -> set[tuple[int, str]]:
    section = README.split("\n### Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d{3} \|", line)]
    return {(int(row.split("|")[1]), code) for row in rows for code in re.findall(r"`([a-z0-9_]+)`", row.split("|")[2])}


def test_the_error_table_lists_every_error_the_service_makes() -> None:
    missing = produced_error_codes() - documented_error_codes()
    assert not missing, f"errors missing from the README's error table (status, code): {sorted(missing)}"


def test_the_error_table_invents_no_error() -> None:
    invented = documented_error_codes() - produced_error_codes()
    assert not invented, f"the README's error table lists errors the service never makes: {sorted(invented)}"
