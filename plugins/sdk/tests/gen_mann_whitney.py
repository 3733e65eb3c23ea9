"""Reference vectors for tollgate_sdk::stats::mann_whitney_u.

Computed once with scipy (an independent implementation) and committed as
mann_whitney_vectors.json; the Rust test reads that file. Regenerate with:

    pip install scipy && python3 gen_mann_whitney.py > mann_whitney_vectors.json
"""
import json

import scipy
from scipy.stats import mannwhitneyu

CASES = [
    ("disjoint", [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),
    ("identical", [3, 3, 3, 3], [3, 3, 3, 3]),
    ("ties_across", [1, 2, 2, 3, 3, 3, 4], [2, 3, 3, 4, 4, 5, 5, 6]),
    ("latency_ms", [310, 322, 305, 298, 330, 315], [300, 305, 298, 310, 302, 299]),
    ("error_rate", [0.0002, 0.0003, 0.0002, 0.0004, 0.0003, 0.0002], [0.0002, 0.0002, 0.0003, 0.0002, 0.0002, 0.0003]),
    ("unequal_sizes", [12.5, 13.1, 11.8, 14.2, 12.9, 13.7, 12.2, 13.3, 12.8, 13.0, 14.0, 12.1],
     [11.9, 12.0, 12.4, 11.7, 12.3, 12.6, 11.5]),
    ("canary_worse", [520, 540, 515, 560, 533, 548, 529, 551, 537, 544], [400, 410, 405, 398, 415, 402, 407, 411, 399, 404]),
    ("one_each", [1.0], [2.0]),
    ("negative", [-5.5, -3.2, -4.8, -1.0, -2.2], [-6.1, -7.3, -5.9, -4.4, -6.6, -8.0]),
    ("mostly_tied", [1, 1, 1, 1, 2], [1, 1, 1, 2, 2, 2]),
]

out = {"generator": f"scipy {scipy.__version__} mannwhitneyu(x, y, alternative='two-sided', method='asymptotic', use_continuity=True)", "cases": []}
for name, x, y in CASES:
    r = mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
    out["cases"].append({"name": name, "x": x, "y": y, "u": float(r.statistic), "p": float(r.pvalue)})
print(json.dumps(out, indent=1))
