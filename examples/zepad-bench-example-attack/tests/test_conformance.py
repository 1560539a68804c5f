"""The plugin contract's checks, as a plugin author runs them in the package's own tests."""

from zepad_bench.testing import check_plugin


def test_feature_turn_conforms():
    report = check_plugin("attacks", "example-feature-turn", params={"steps": 2})
    assert report.ok, "\n".join(report.lines())
