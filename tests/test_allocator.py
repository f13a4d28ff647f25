"""``reuse_freed_memory``: a forward+backward pass reuses the blocks the previous one freed, so
its activations cost no page faults (counted by the kernel, ``ru_minflt``)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cli import main as cli_main

CYCLES = """
import json, resource, sys
import torch
if sys.argv[1] == "reuse":
    from audit.allocator import reuse_freed_memory
    assert reuse_freed_memory()
torch.manual_seed(0)
layers = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
x = torch.rand(20, 8, 256, 256, requires_grad=True)  # 40 MiB per activation: above glibc's largest mmap threshold
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.autograd.grad(layers(x).sum(), x)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def _faults(mode: str) -> list[int]:
    output = subprocess.run([sys.executable, "-c", CYCLES, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def _huge_pages_always() -> bool:
    """With transparent huge pages always on, a fault maps 2 MiB and the counts below mean little."""
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.skipif(_huge_pages_always(), reason="transparent huge pages always on: faults are not counted in 4 KiB pages")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = 40 * 2**20 // 4096  # of one activation
    default, reused = _faults("default"), _faults("reuse")
    assert min(default[1:]) > 10 * pages  # every pass maps its activations afresh
    # after the first pass its freed blocks are taken again (now and then one or two are mapped anew)
    assert sum(reused[1:]) < sum(default[1:]) / 5


def test_command_line_turns_it_on(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_main, "reuse_freed_memory", lambda: calls.append(True) or True)
    assert cli_main.main(["plugins"]) == 0
    assert calls == [True]
