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


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys, time; t = time.perf_counter(); from res2net.cli import build_parser; "
        "build_parser().format_help(); print(time.perf_counter() - t, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    seconds, torch_loaded = out.stdout.split()
    assert torch_loaded == "False", "res2net --help must not import torch"
    assert float(seconds) < 0.5  # measured ~0.02 s; importing torch alone takes >1 s


def test_missing_extra_is_one_line_naming_the_extra(tmp_path):
    """onnx / uvicorn hidden from the import system: one line with the pip install, no traceback."""
    for module, argv, extra in (
        (
            "onnx",
            ["export", "--model", "res2net_tiny", "--format", "onnx", "--output", str(tmp_path / "m.onnx")],
            "deploy",
        ),
        ("uvicorn", ["serve", "--model", "res2net_tiny"], "serve"),
    ):
        code = f"import sys; sys.modules[{module!r}] = None; from res2net.cli import main; sys.exit(main({argv!r}))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 1, out.stderr
        assert f"pip install 'res2net[{extra}]'" in out.stderr and "Traceback" not in out.stderr
        assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1


def test_warnings_reach_the_cli_as_log_lines(tmp_path):
    """A library warning is a log line, not Python's echo of the warning's source line."""
    code = (
        "import sys, warnings, res2net.cli as c\n"
        "class W:\n    @staticmethod\n    def add_arguments(p): pass\n"
        "    @staticmethod\n    def main(a):\n        warnings.warn('something odd'); return 0\n"
        "c._command = lambda name: W\nsys.exit(c.main(['list']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "WARNING py.warnings" in out.stderr and "warnings.warn(" not in out.stderr
