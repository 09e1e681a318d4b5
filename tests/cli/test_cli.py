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


def _subparser(command):
    import argparse

    from res2net.cli import build_parser

    parser = build_parser(command)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


def test_every_flag_has_help_and_commands_come_in_a_users_order():
    import argparse

    from res2net.cli import COMMANDS

    assert list(COMMANDS)[:3] == ["list", "download", "predict"] and list(COMMANDS)[-1] == "stats"
    undocumented = [
        f"{name} {a.option_strings or a.dest}"
        for name in COMMANDS
        for a in _subparser(name)._actions
        if not a.help and not isinstance(a, argparse._HelpAction)
    ]
    assert not undocumented, undocumented


def test_one_spelling_per_flag_old_spellings_still_parse():
    from res2net.cli import build_parser

    for command, rest in (
        ("predict", []),
        ("serve", ["--model", "m"]),
        ("export", ["--model", "m", "--format", "onnx", "--output", "o"]),
    ):
        sub = _subparser(command)
        assert "--topk" in sub._option_string_actions and "--top-k" in sub._option_string_actions, command
        dest = sub._option_string_actions["--topk"].dest
        for spelling in ("--topk", "--top-k"):
            args = build_parser(command).parse_args([command, *rest, spelling, "3"])
            assert getattr(args, dest) == 3
    for command, flag in (("quantize-report", "--engines"), ("benchmark", "--engines")):
        parse = build_parser(command).parse_args
        spaced = parse([command, flag, "torch", "openvino"])
        commas = parse([command, flag, "torch,openvino"])
        assert spaced.engines == commas.engines == ["torch", "openvino"]
    assert build_parser("quantize-report").parse_args(["quantize-report", "--batch-sizes", "1", "8"]).batch_sizes == [
        1,
        8,
    ]
    assert build_parser("quantize-report").parse_args(["quantize-report", "--iters", "4"]).iters == 4  # old name
    assert build_parser("stats").parse_args(["stats", "--image-size", "256"]).image_size == 256  # old name
    bad = run("benchmark", "--engines", "torch,nope")
    assert bad.returncode == 2 and "'nope' is not one of" in bad.stderr
