"""`python -m app eval ltv` end to end on small synthetic CDNOW-format files (never the real data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.__main__ import main
from tests.unit.ml.ltv.test_simulated import PN, simulate

START = np.datetime64("1997-01-01", "D")


def _cdnow(path: Path, layout: int) -> Path:
    """400 simulated customers over 78 weeks from 1997-01-01, in the master (4-column, with header) or the
    sample (5-column) layout."""
    cust, day, value, _, _ = simulate("pnbd", PN, 400, seed=21, cal_weeks=39.0, hold_weeks=39.0)
    lines = [" customer_id  date number_of_cds  dollar_value"] if layout == 4 else []
    for c, d, v in zip(cust, day, value, strict=True):
        date = str(START + int(d)).replace("-", "")
        qty = 1 + int(v) % 3
        lines.append(f" {c + 1:05d} {date} {qty:3d} {v:8.2f}" if layout == 4 else
                     f" {c + 1:05d} {c + 7:04d} {date} {qty:3d} {v:8.2f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "ltv", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("layout", [4, 5])
def test_eval_prints_the_table_and_the_json(tmp_path, capsys, layout):
    path = _cdnow(tmp_path / "cdnow.txt", layout)
    code, out, _ = _run(capsys, "--data", str(path))
    assert code == 0
    for name in ("BG/NBD", "Pareto/NBD", "contrail", "Gamma-Gamma MAE", "39-week holdout"):
        assert name in out
    code, out, _ = _run(capsys, "--data", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["total_actual"] > 0 and doc["customers"] == 400
    rows = {r["name"]: r for r in doc["rows"]}
    assert {"BG/NBD", "Pareto/NBD", "contrail"} <= set(rows)
    for r in doc["rows"]:
        assert set(r) == {"name", "mae", "rmse", "total_predicted"}
        assert 0 <= r["mae"] <= r["rmse"]
    assert abs(rows["contrail"]["total_predicted"] / doc["total_actual"] - 1) < 0.25


def test_eval_options_change_the_split(tmp_path, capsys):
    path = _cdnow(tmp_path / "cdnow.txt", 4)
    code, out, _ = _run(capsys, "--data", str(path), "--json", "--calibration-end", "1997-06-30",
                        "--holdout-weeks", "20")
    assert code == 0
    assert json.loads(out)["holdout_weeks"] == 20


@pytest.mark.parametrize("content,message", [
    ("00001 19970101 1\n", "expected 4 columns"),
    ("00001 19970101 1 10.0\n00002 1997-01-02 1 5.0\n", "line 2: expected a YYYYMMDD date"),
    ("00001 19970101 1 10.0\n00002 19970102 1\n", "line 2: expected 4 columns like the first line"),
    ("", "no transactions"),
    ("00001 19970101 1 10.0\n00002 19970102 1 5.0\n", "no transaction after the calibration end"),
    ("00001 19970101 1 10.0\n00002 19970102 1 5.0\n00001 19971002 1 5.0\n", "too little data"),
    ("00001 19980101 1 10.0\n", "no transaction on or before the calibration end"),
])
def test_a_bad_file_is_one_error_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    code, out, err = _run(capsys, "--data", str(path))
    assert code == 2 and out == ""
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("options,message", [
    (["--holdout-weeks", "nan"], "--holdout-weeks must be more than 0 and at most 520, got nan"),
    (["--holdout-weeks", "inf"], "--holdout-weeks must be more than 0"),
    (["--holdout-weeks", "0"], "--holdout-weeks must be more than 0"),
    (["--calibration-end", "2030-01-01"], "no transaction after the calibration end 2030-01-01"),
])
def test_a_holdout_with_nothing_to_hold_out_is_one_error_line_and_exit_code_2(tmp_path, capsys, options, message):
    code, out, err = _run(capsys, "--data", str(_cdnow(tmp_path / "cdnow.txt", 4)), *options)
    assert code == 2 and out == ""
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("amount", ["nan", "inf", "-inf", "-5.0"])
def test_an_amount_that_is_not_finite_or_is_negative_is_one_error_line_naming_it(tmp_path, capsys, amount):
    """float() reads nan and inf: a file holding them used to print NaN and Infinity, which is not JSON."""
    path = _cdnow(tmp_path / "cdnow.txt", 4)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[7] = " ".join(lines[7].split()[:-1] + [amount])  # the header is line 1: this is line 8
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = _run(capsys, "--data", str(path), "--json")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"line 8: the amount must be a finite number, 0 or more, got '{amount}'" in err


def test_a_missing_file_is_exit_code_2(tmp_path, capsys):
    code, _, err = _run(capsys, "--data", str(tmp_path / "nope.txt"))
    assert code == 2 and "cannot read" in err
