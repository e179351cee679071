"""Claims: statuses, exit codes, recipe filtering, tolerance, significance, malformed files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fabricate import fabricate_run
from scipy import stats as sps

from robench.cli import main
from robench.config import load_config
from robench.errors import ConfigError
from robench.reporting.claims import (
    FAIL,
    NOT_ENOUGH_DATA,
    PASS,
    assert_claims,
    check_claims,
    load_claims,
)
from robench.reporting.examples import run_examples
from robench.reporting.stats import bootstrap_p

QUICK = """
[defaults.recipe]
config = "quick"
model = "wrn_16_2"
dataset = "cifar10-jpeg"
epochs = 3
"""


def _claims(tmp_path: Path, body: str, head: str = QUICK) -> Path:
    path = tmp_path / "claims.toml"
    path.write_text(head + body)
    return path


def _claim(check: str, **keys: object) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f'\n[[claim]]\ncheck = "{check}"\n{extra}'


@pytest.fixture
def three_seeds(results: Path) -> Path:
    """baseline, augmix and ipmix, seeds 0-2, with exact clean and corruption errors."""
    numbers = {
        "baseline": ([4.4, 4.5, 4.3], [26.4, 26.2, 26.6]),
        "augmix": ([4.3, 4.2, 4.4], [10.0, 10.1, 9.9]),
        "ipmix": ([4.6, 4.7, 4.5], [8.6, 8.8, 8.4]),
    }
    for method, (clean, corr) in numbers.items():
        for seed in range(3):
            values = {"clean_error": clean[seed], "corruption_error": corr[seed]}
            fabricate_run(results, method, seed, values=values)
    return results


def test_pass_fail_and_not_enough_data(tmp_path: Path, three_seeds: Path) -> None:
    path = _claims(
        tmp_path,
        _claim("ipmix.corruption_error < augmix.corruption_error")
        + _claim("ipmix.clean_error < baseline.clean_error")
        + _claim("pixmix.corruption_error < augmix.corruption_error")
        + _claim("ipmix.corruption_error < 9"),
    )
    table = check_claims(path, three_seeds)
    assert list(table["status"]) == [PASS, FAIL, NOT_ENOUGH_DATA, PASS]
    fail = table.iloc[1]
    assert fail["margin"] == pytest.approx(4.4 - 4.6)  # misses by 0.2
    assert fail["note"] == "misses by 0.2"
    assert "no pixmix runs" in table.iloc[2]["note"]
    # Welch p-value of the first claim, by scipy
    expected = sps.ttest_ind(
        [8.6, 8.8, 8.4], [10.0, 10.1, 9.9], equal_var=False, alternative="less"
    )
    assert table.iloc[0]["p_value"] == pytest.approx(expected.pvalue)
    assert table.iloc[0]["test"] == "Welch t (seeds)"
    one = sps.ttest_1samp([8.6, 8.8, 8.4], 9, alternative="less").pvalue
    assert table.iloc[3]["p_value"] == pytest.approx(one)


def test_exit_codes(tmp_path: Path, three_seeds: Path, capsys) -> None:
    passing = _claims(tmp_path, _claim("ipmix.corruption_error < augmix.corruption_error"))
    assert main(["check", str(passing), "--results-dir", str(three_seeds)]) == 0
    assert "1 PASS" in capsys.readouterr().out
    missing = tmp_path / "missing.toml"
    missing.write_text(QUICK + _claim("cutmix.clean_error < baseline.clean_error"))
    assert main(["check", str(missing), "--results-dir", str(three_seeds)]) == 1
    assert "NOT-ENOUGH-DATA fails the check" in capsys.readouterr().out
    args = ["check", str(missing), "--results-dir", str(three_seeds), "--allow-missing"]
    assert main(args) == 0
    failing = tmp_path / "failing.toml"
    failing.write_text(QUICK + _claim("ipmix.clean_error <= baseline.clean_error"))
    csv = tmp_path / "claims.csv"
    code = main(["check", str(failing), "--results-dir", str(three_seeds), "--csv", str(csv)])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "misses by 0.2" in out and csv.is_file()
    malformed = tmp_path / "bad.toml"
    malformed.write_text(QUICK + _claim("ipmix.clean_error << baseline.clean_error"))
    assert main(["check", str(malformed), "--results-dir", str(three_seeds)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robench: error:") and "claim 1" in err[0]


def test_no_data_fails_closed(tmp_path: Path, three_seeds: Path, capsys) -> None:
    """A claims file checked against a folder without its runs fails (exit 1), whatever the
    claims say; a results folder that does not exist is a one-line error (exit 2)."""
    path = _claims(tmp_path, _claim("ipmix.corruption_error < augmix.corruption_error"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check", str(path), "--results-dir", str(empty)]) == 1
    assert "no finished runs" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"NOT-ENOUGH-DATA: ipmix\.corruption_error"):
        assert_claims(path, empty)
    assert assert_claims(path, empty, allow_missing=True).loc[0, "status"] == NOT_ENOUGH_DATA
    assert main(["check", str(path), "--results-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("ipmix.corruption_eror < augmix.corruption_error", "did you mean 'corruption_error'"),
        ("ipmix.clean_error < augmix.pgd_eror", "unknown metric augmix.pgd_eror"),
        ("ipmix.mce_vs_baselin < 100", "did you mean 'mce_vs_baseline'"),
    ],
)
def test_an_unknown_metric_is_an_error(
    tmp_path: Path, three_seeds: Path, check: str, message: str, capsys
) -> None:
    path = _claims(tmp_path, _claim(check))
    with pytest.raises(ConfigError, match=message):
        check_claims(path, three_seeds)
    empty = tmp_path / "empty"
    empty.mkdir()  # refused from the declarations alone, before any run is read
    assert main(["check", str(path), "--results-dir", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robench: error:")


def test_declared_and_held_metrics_are_known(tmp_path: Path, results: Path) -> None:
    """Per-corruption values (declared with a wildcard), derived mCE values and a value only the
    runs hold (an undeclared plugin's) may all be claimed."""
    for method in ("baseline", "ipmix"):
        run = fabricate_run(results, method, 0, values={"corruption_error_fog": 20.0})
        doc = json.loads((run / "metrics.json").read_text())
        doc["metrics"]["zz"] = {"zz_plugin": 1.0}
        (run / "metrics.json").write_text(json.dumps(doc))
    body = (
        _claim("ipmix.corruption_error_fog < 30")
        + _claim("ipmix.relative_mce_vs_baseline < 200")
        + _claim("ipmix.zz_plugin < 2")
    )
    table = check_claims(_claims(tmp_path, body), results)
    assert table["status"].tolist()[0] == PASS and table["status"].tolist()[2] == PASS


def test_a_recipe_without_runs_names_the_recipes_there(tmp_path: Path, three_seeds: Path) -> None:
    other = 'recipe = {config = "paper_wrn40_2", model = "wrn_40_2", epochs = 100}'
    path = _claims(tmp_path, f"{_claim('ipmix.clean_error < 5')}{other}\n")
    note = check_claims(path, three_seeds).loc[0, "note"]
    assert "no runs of recipe paper_wrn40_2 / wrn_40_2 / cifar10-jpeg / 100 ep" in note
    assert "the results hold: quick / wrn_16_2 / cifar10-jpeg / 3 ep" in note
    methods = check_claims(_claims(tmp_path, _claim("cutmix.clean_error < 5")), three_seeds)
    assert "(its methods: augmix, baseline, ipmix)" in methods.loc[0, "note"]


def test_tolerance_and_constants(tmp_path: Path, three_seeds: Path) -> None:
    path = _claims(
        tmp_path,
        _claim("ipmix.clean_error <= baseline.clean_error", tolerance=0.3)
        + _claim("ipmix.clean_error <= baseline.clean_error + 0.3")
        + _claim("baseline.corruption_error > 3 * ipmix.corruption_error", tolerance=0.5)
        + _claim("10 > ipmix.corruption_error"),
    )
    table = check_claims(path, three_seeds)
    assert list(table["status"]) == [PASS, PASS, PASS, PASS]
    assert table.loc[0, "margin"] == pytest.approx(0.1)
    assert table.loc[1, "margin"] == pytest.approx(0.1)
    assert table.loc[1, "rhs"] == pytest.approx(4.7)
    assert table.loc[2, "margin"] == pytest.approx(26.4 - 3 * 8.6 + 0.5)
    # H1: ipmix - baseline < 0.3 (Welch)
    p = sps.ttest_ind([4.6, 4.7, 4.5], [4.7, 4.8, 4.6], equal_var=False, alternative="less")
    assert table.loc[0, "p_value"] == pytest.approx(p.pvalue)
    assert table.loc[3, "lhs"] == pytest.approx(8.6)  # the number moved to the right-hand side


def test_alpha_requires_significance(tmp_path: Path, three_seeds: Path) -> None:
    path = _claims(
        tmp_path,
        _claim("augmix.clean_error < baseline.clean_error", alpha=0.05)  # 4.3 vs 4.4: noise
        + _claim("ipmix.corruption_error < augmix.corruption_error", alpha=0.05),
    )
    table = check_claims(path, three_seeds)
    assert list(table["status"]) == [NOT_ENOUGH_DATA, PASS]
    assert "not significant" in table.loc[0, "note"] and table.loc[0, "p_value"] > 0.05


def test_claims_see_only_runs_of_their_recipe(tmp_path: Path, results: Path) -> None:
    fabricate_run(results, "baseline", 0)
    fabricate_run(results, "ipmix", 0)
    # a paper-recipe ipmix run with a terrible corruption error must not leak into quick claims
    fabricate_run(
        results, "ipmix", 0, config="paper_wrn40_4", model="wrn_40_4", epochs=100,
        values={"corruption_error": 99.0},
    )  # fmt: skip
    paper = 'recipe = {config = "paper_wrn40_4", model = "wrn_40_4", epochs = 100}'
    path = _claims(
        tmp_path,
        _claim("ipmix.corruption_error < baseline.corruption_error")
        + _claim("ipmix.corruption_error < 50")
        + f"{_claim('ipmix.corruption_error < 50')}{paper}\n"
        + f"{_claim('ipmix.corruption_error < baseline.corruption_error')}{paper}\n",
    )
    table = check_claims(path, results)
    assert list(table["status"]) == [PASS, PASS, FAIL, NOT_ENOUGH_DATA]
    assert table.loc[2, "lhs"] == 99.0
    assert "no baseline runs" in table.loc[3, "note"]


def test_method_options_pin_the_runs(tmp_path: Path, results: Path) -> None:
    fabricate_run(results, "baseline", 0)
    fabricate_run(results, "augmix", 0, values={"clean_error": 1.0})
    fabricate_run(results, "augmix", 0, options={"jsd": False}, values={"clean_error": 50.0})
    check = _claim("augmix.clean_error < baseline.clean_error")
    table = check_claims(_claims(tmp_path, check), results)
    assert table.loc[0, "status"] == NOT_ENOUGH_DATA
    assert "2 recipes match" in table.loc[0, "note"] and "jsd" in table.loc[0, "note"]
    pinned = QUICK + "options = {augmix = {jsd = false}}\n" + check
    table = check_claims(_claims(tmp_path, pinned, head=""), results)
    assert table.loc[0, "status"] == FAIL and table.loc[0, "lhs"] == 50.0
    default = QUICK + "options = {augmix = {jsd = true}}\n" + check
    assert check_claims(_claims(tmp_path, default, head=""), results).loc[0, "status"] == PASS


def test_one_seed_uses_a_paired_bootstrap(tmp_path: Path, results: Path) -> None:
    base = fabricate_run(results, "baseline", 0)
    ipmix = fabricate_run(results, "ipmix", 0)
    path = _claims(tmp_path, _claim("ipmix.corruption_error < baseline.corruption_error"))
    row = check_claims(path, results).iloc[0]
    a = run_examples(ipmix, "testhash")["corruption_error"]
    b = run_examples(base, "testhash")["corruption_error"]
    assert row["test"] == "paired bootstrap (examples)"
    assert row["p_value"] == bootstrap_p(a, b, threshold=0.0, alternative="less")
    assert row["p_value"] < 0.01 and row["status"] == PASS
    flips = check_claims(_claims(tmp_path, _claim("ipmix.mfp < baseline.mfp", alpha=0.05)), results)
    assert flips.loc[0, "status"] == NOT_ENOUGH_DATA and math.isnan(flips.loc[0, "p_value"])
    assert "no per-example records" in flips.loc[0, "note"]


def test_assert_claims_for_a_project_test_suite(tmp_path: Path, three_seeds: Path) -> None:
    good = _claims(tmp_path, _claim("ipmix.corruption_error < augmix.corruption_error"))
    assert len(assert_claims(good, three_seeds)) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text(QUICK + _claim("ipmix.clean_error < baseline.clean_error"))
    with pytest.raises(AssertionError, match=r"1 of 1 claims fail:\nFAIL: ipmix.clean_error"):
        assert_claims(bad, three_seeds)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_claim("ipmix.clean_error < baseline"), "cannot read 'baseline'"),
        (_claim("ipmix.clean_error <"), "must be 'A < B'"),
        (_claim("ipmix.clean_error < 1 < 2"), "one operator"),
        (_claim("1 < 2"), "compares two numbers"),
        (_claim("ipmx.clean_error < 2"), "did you mean 'ipmix'"),
        (_claim("ipmix.clean_error < 2", tolerence=1), "did you mean 'tolerance'"),
        (_claim("ipmix.clean_error < 2", alpha=5), "alpha must be between 0 and 1"),
        (_claim("ipmix.clean_error < 2", tolerance='"a"'), "tolerance must be a number"),
        (_claim("ipmix.clean_error < 2", recipe="{epochs = 3.5}"), "epochs must be an integer"),
        (_claim("ipmix.clean_error < 2", recipe="{seed = 1}"), "unknown recipe keys"),
        ("\n[[claim]]\nname = 'x'\n", "needs check"),
        ("\n[claims]\n", "unknown top-level keys"),
        ("", "no claims"),
        ("[[claim]\n", "not valid TOML"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_claims(_claims(tmp_path, body))


def test_the_recipe_must_be_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must name config, model, dataset, epochs"):
        load_claims(_claims(tmp_path, _claim("ipmix.clean_error < 2"), head=""))


def test_the_shipped_paper_claims_load(repo_root: Path) -> None:
    claims = load_claims(repo_root / "baselines" / "claims" / "ipmix_paper.toml")
    assert len(claims) >= 10
    assert {c.recipe.dataset for c in claims} == {"cifar10", "cifar100"}
    assert all(c.recipe.model == "wrn_40_4" and c.recipe.epochs == 100 for c in claims)
    assert all(c.recipe.options["ipmix"] == {"jsd": True} for c in claims)
    assert all(c.source.startswith("IPMix v5") for c in claims)


def test_the_shipped_wrn40_2_claims_are_scoped_to_their_recipe(repo_root: Path) -> None:
    """baselines/claims/paper_wrn40_2.toml is about the runs of baselines/paper_wrn40_2.toml on
    cifar10-jpeg, and every claim names its paper."""
    recipe = load_config(repo_root / "baselines" / "paper_wrn40_2.toml")
    claims = load_claims(repo_root / "baselines" / "claims" / "paper_wrn40_2.toml")
    assert len(claims) >= 10
    for c in claims:
        assert (c.recipe.config, c.recipe.model, c.recipe.epochs) == (
            recipe.name,
            recipe.model.name,
            recipe.train.epochs,
        )
        assert c.recipe.dataset == "cifar10-jpeg"
        assert c.source.split()[0] in {"AugMix", "PixMix", "IPMix"}
    methods = {side.method for c in claims for side in (c.lhs, c.rhs)}
    assert methods == {"baseline", "cutmix", "augmix", "pixmix", "ipmix"}
