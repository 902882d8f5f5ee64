"""Runs against a reference run, photo by photo (the ablation table's numbers)."""

import pytest

from afdserve.evaluation.run_comparison import compare_to_reference, comparison_markdown, hit_bits


def result(name: str, q10_hits: str, files: str = "same") -> dict:
    row = {"protocol": "P1", "quality": 10, "images": len(q10_hits), "afd_top1": q10_hits.count("1") / len(q10_hits),
           "recovered_share": 0.2, "top1_hits": {"plain": "0" * len(q10_hits), "afd": q10_hits}}
    old = {"protocol": "P1", "quality": 5, "images": len(q10_hits)}  # evaluated before hits were kept
    return {"run": name, "files_sha256": files, "rows": [old, row], "cost": {"module_macs": 136e6}}


def test_each_run_is_compared_with_the_first_on_the_same_photos():
    reference = "1" * 600 + "0" * 400
    same, better = result("same", reference), result("better", "1" * 650 + "0" * 350)
    comparison = compare_to_reference([result("reference", reference), same, better])
    same_row, better_row = comparison["rows"]  # q5 has no hits: left out, not guessed
    assert same_row["difference"] == 0 and same_row["ci95"][0] < 0 < same_row["ci95"][1]
    assert same_row["mcnemar_p"] == 1.0
    # 50 photos more, none fewer: +5 points, and an interval clear of 0.
    assert better_row["difference"] == pytest.approx(0.05) and better_row["ci95"][0] > 0
    table = comparison_markdown(comparison)
    assert "| better | +5.0 (" in table and "P1 q10 (60.0)" in table


def test_runs_on_other_photos_are_refused():
    with pytest.raises(SystemExit, match="different photos"):
        compare_to_reference([result("a", "10"), result("b", "10", files="other")])


def test_hits_are_kept_in_photo_order():
    assert hit_bits([True, False, True]) == "101"
