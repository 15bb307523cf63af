"""``examples/bench_air_defaults.py`` (the AIR guide's step-time comparison of the defaults)
runs end to end at a tiny size and prints both arms, the added work and the ratio."""

import re


def test_bench_air_defaults_prints_the_ratio(load_example, capsys):
    bench = load_example("bench_air_defaults")
    bench.main(["--steps", "2", "--warmup", "1", "--batch-size", "4"])
    out = capsys.readouterr().out
    assert re.search(r"^previous +mean \d+\.\d+ s/step", out, re.M)
    assert re.search(r"^defaults +mean \d+\.\d+ s/step", out, re.M)
    assert re.search(r"compose \d+\.\d+ ms, copy \d+\.\d+ ms, average \d+\.\d+ ms", out)
    ratio = float(re.search(r"ratio defaults / previous \(means\): (\d+\.\d+)", out).group(1))
    assert ratio > 0
