"""Compare gradient estimators for discrete latents: variance, bias, cost, training curves.

The same as ``probnets variance ...``:

    python examples/compare_estimators.py toy --target 0.45 --out runs/toy45
    python examples/compare_estimators.py sbn --layers 200 200 --out runs/sbn2 \
        --track-steps 1000 --track-every 250
    python examples/compare_estimators.py custom --factory mypkg.mymod:make_problem --out runs/x

See ``probnets variance --help`` and :func:`probnets.experiments.run_variance` for what each
run writes.
"""

import sys

from probnets.cli import main

if __name__ == "__main__":
    sys.exit(main(["variance", *sys.argv[1:]]))
