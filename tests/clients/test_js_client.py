"""The JavaScript client's suite (``node --test clients/js/test/``) against real stacks this
test starts: the same fault scenarios as the Python client's, driven from node; the faults
that need a signal go through the fault controller in this process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.clients.harness import CLAUDE, FaultController, Faulty
from tests.gateway.seed import seed_demo_for
from tests.proxy import CuttingProxy
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.faults


@pytest.mark.timeout(280)
def test_js_client_suite(faulty: Faulty, trim: tuple[Stack, CuttingProxy], controller: FaultController):
    node = shutil.which("node")
    assert node, "node (>= 18) is needed for the JavaScript client's tests (.ci/run installs nodejs)"
    key, ns, _ = tenant = faulty.stack.new_tenant()
    seed_demo_for(faulty.stack, tenant)
    tstack, tproxy = trim
    tkey, tns, _ = tstack.new_tenant()
    tgw = next(p for p in tstack.procs if p.kind == "gateway")
    env = {**os.environ, "AGENTSTREAM_TEST_PROXY": faulty.proxy.url,
           "AGENTSTREAM_TEST_PROXY_CONTROL": faulty.proxy.control_url, "AGENTSTREAM_TEST_TRIM_PROXY_CONTROL": tproxy.control_url,
           "AGENTSTREAM_TEST_GATEWAY": faulty.direct,
           "AGENTSTREAM_TEST_KEY": key, "AGENTSTREAM_TEST_NAMESPACE": ns, "AGENTSTREAM_TEST_FAULTS": controller.url,
           "AGENTSTREAM_TEST_CLAUDE_MODEL": CLAUDE, "AGENTSTREAM_TEST_TRIM_PROXY": tproxy.url,
           "AGENTSTREAM_TEST_TRIM_GATEWAY": tgw.url, "AGENTSTREAM_TEST_TRIM_KEY": tkey,
           "AGENTSTREAM_TEST_TRIM_NAMESPACE": tns}
    log = faulty.stack.data_dir / "node-test.log"
    with log.open("w") as sink:  # a file, so a hung run can be read while it runs
        out = subprocess.run([node, "--test", "--test-reporter=tap", "clients/js/test/"], cwd=ROOT, env=env,
                             stdout=sink, stderr=subprocess.STDOUT, text=True, timeout=240)
    text = log.read_text()
    assert out.returncode == 0, text
    assert re.search(r"^# fail 0$", text, re.M) and "# SKIP" not in text, text
    for found in re.findall(r"js client, [^\n]*", text):
        print("\n" + found)
