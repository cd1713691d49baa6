import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_tokenizer_benchmark_prints_a_row():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tokenizer.py"), "--quick", "--runs", "1"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    row = [l for l in out.splitlines() if l.startswith("| cv4x8x8-tiny")]
    assert len(row) == 1 and "matmul peak" in out
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert float(cells[4]) > 0 and float(cells[5]) > 0  # fp32 and bf16 ms/frame
