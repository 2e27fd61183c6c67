"""Writes models/samples/<word>_at_<t>s.wav: 4 s of quiet noise with one keyword, spoken by a voice
and variant that the shipped model never heard, starting at a known time (in the file name)."""
import sys
from pathlib import Path

import numpy as np

from liquid_edge.synth import SR, VOICES, noise, say, split_variants, variants, write_wav

word, start = (sys.argv[1], float(sys.argv[2])) if len(sys.argv) > 2 else ("yes", 1.5)
rng = np.random.default_rng(7)
x = 0.01 * noise("pink", 4 * SR, rng)
utt = say(word, VOICES["test"][0], sorted(split_variants(variants())["test"])[0], 160, 50)
i = int(start * SR)
x[i:i + len(utt)] += 0.6 * utt / np.abs(utt).max()
out = Path("models/samples") / f"{word}_at_{start:.2f}s.wav"
write_wav(out, x)
print(f"wrote {out} ({len(utt) / SR:.2f} s utterance at {start:.2f} s)")
