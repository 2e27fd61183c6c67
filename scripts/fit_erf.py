"""The erf coefficients of runtime/native.c: erf(z) on [0, 4] as a degree-18 polynomial in w = (z - 2)/2,
fitted in float64 by least squares at Chebyshev nodes (erf(4) rounds to 1 in float32).

    python scripts/fit_erf.py      # prints the C table and the float32 error of the formula
"""
import math

import numpy as np

DEG = 18
z = 2 + 2 * np.cos(np.pi * (np.arange(8000) + 0.5) / 8000)
c = np.linalg.lstsq(np.vander((z - 2) / 2, DEG + 1, increasing=True), [math.erf(v) for v in z], rcond=None)[0]
print("static const float E[%d] = {" % (DEG + 1))
print(",\n".join("    " + ", ".join(f"{x:.9e}f" for x in c[i:i + 4]) for i in range(0, DEG + 1, 4)) + "};")
zz = np.linspace(0, 4, 40001)
w, q = ((zz - 2) / 2).astype(np.float32), np.float32(c[-1])
for a in c[-2::-1]:
    q = (q * w + np.float32(a)).astype(np.float32)
print("max abs error (float32 Horner):", float(np.abs(q - np.array([math.erf(v) for v in zz])).max()))
