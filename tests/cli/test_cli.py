"""The ``res2net`` command's own plumbing (subcommands are tested beside their modules)."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "res2net", *args], capture_output=True, text=True, timeout=300)


def test_stats_table_and_json():
    out = run("stats")
    assert out.returncode == 0, out.stderr
    assert "| Res2Net50_vd_26w_4s | 0.798 | 0.949 | 8.99 | 4.50 | 25.72 | 25,718,352 |" in out.stdout
    assert "swapped" in out.stdout
    rows = [json.loads(line) for line in run("stats", "--json", "Res2Net50_14w_8s").stdout.splitlines()]
    assert rows[0]["params"] == 25_059_816


def test_unknown_model_is_one_clear_line():
    out = run("stats", "Res2Net51")
    assert out.returncode == 1
    assert "unknown model 'Res2Net51'" in out.stderr and "Traceback" not in out.stderr


def test_convert_refuses_a_malicious_file_in_one_line(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    src = tmp_path / "evil.pdparams"
    src.write_bytes(pickle.dumps({"a": Evil()}))
    out = run("convert", str(src), str(tmp_path / "out.safetensors"))
    assert out.returncode == 1 and "pwned" not in out.stdout
    assert "refused to load" in out.stderr and "Traceback" not in out.stderr
