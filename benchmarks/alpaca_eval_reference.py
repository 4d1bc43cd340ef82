"""AlpacaEval's own length-controlled win rates on the cases of ``tests/test_assess.py`` (the
last value of each of its ``LC_CASES``), the reference for
:func:`crowdtune.training.assess.length_controlled_win_rate`.

alpaca_eval is not a dependency (it pulls in openai, datasets and more); its GLM needs only
pandas, scikit-learn and patsy. So: the wheel, unpacked, and patsy beside it::

    pip download alpaca-eval==0.6.6 --no-deps -d /tmp/ae && unzip -q -d /tmp/ae/x /tmp/ae/*.whl
    pip install --target /tmp/aedeps patsy
    python -m benchmarks.alpaca_eval_reference /tmp/ae/x /tmp/aedeps

Its package ``__init__`` (the whole evaluator) is skipped, and the modules its helpers import but
the GLM never calls are stubbed. ``length_controlled_minimal`` (tanh-scaled length difference and
a model term) still reads the instruction difficulties from the hub; they are given as zeros, which
that GLM does not use.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import pandas as pd
from tests.test_assess import LC_CASES, lc_case


def load_glm(unpacked: str, extra_path: str) -> types.ModuleType:
    """alpaca_eval's ``metrics.glm_winrate`` from the unpacked wheel, without the evaluator."""
    sys.path.append(extra_path)  # after the environment's packages: patsy only
    for name in ("datasets", "pkg_resources", "dotenv"):
        stub = types.ModuleType(name)
        stub.Dataset = type("Dataset", (), {})  # type: ignore[attr-defined]
        sys.modules[name] = stub
    package = types.ModuleType("alpaca_eval")
    package.__path__ = [str(Path(unpacked) / "alpaca_eval")]
    sys.modules["alpaca_eval"] = package
    from alpaca_eval.metrics import glm_winrate

    difficulties = Path(tempfile.mkdtemp()) / "df_gamed.csv"
    pd.DataFrame({"model": "none", "index": range(1000), "instruction_difficulty": 0.0}).to_csv(
        difficulties, index=False
    )
    glm_winrate.hf_hub_download = lambda *args, **kwargs: str(difficulties)
    return glm_winrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unpacked", help="the unpacked alpaca_eval wheel")
    parser.add_argument("extra_path", help="where patsy is installed")
    args = parser.parse_args()
    glm = load_glm(args.unpacked, args.extra_path)
    for seed, case in enumerate(LC_CASES):
        wins, difference = lc_case(*case[:4], seed=seed)
        # AlpacaEval's preference: 1 the baseline (output_1) wins, 2 the model wins, 0 a tie.
        frame = pd.DataFrame(
            {
                "output_1": ["a" * 1000 for _ in wins],
                "output_2": ["a" * int(1000 + d) for d in difference],
                "preference": [{1.0: 2.0, 0.0: 1.0, 0.5: 0.0}[w] for w in wins],
                "index": range(len(wins)),
                "generator_1": "base",
                "generator_2": "tuned",
                "annotator": "crowd",
            }
        )
        metrics = glm.get_length_controlled_winrate(
            frame,
            glm_name="length_controlled_minimal",
            save_weights_dir=None,
            is_warn_extreme_changes=False,
        )
        print(f"    {(*case[:4], float(metrics['length_controlled_winrate']) / 100)},")


if __name__ == "__main__":
    main()
