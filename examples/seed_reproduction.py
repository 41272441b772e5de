"""Rebuild the seed write-up's experiment through the public API and compare with its printed table.

The seed ("Linearized Weight Representation in Neural Networks") trains a [50, 5] sigmoid network
with per-sample SGD for 10 epochs on 1000 random samples and prints, each epoch, the loss of the
last sample. Run: ``python examples/seed_reproduction.py`` (writes seed_loss_curve.png).
"""

from __future__ import annotations

import numpy as np

import flatnet_xp as fx
from flatnet_xp.demo import TOLERANCE, plot_seed_curve
from flatnet_xp.seed import SEED_TABLE

# The seed's data and starting weights, drawn in the seed's order (np.random.seed(0); x, wt, bt; w, b).
rs = np.random.RandomState(0)
x = rs.randn(1000, 50)
wt, bt = rs.randn(50 * 5), rs.randn(5)
y = 1 / (1 + np.exp(-(x @ wt.reshape(50, 5) + bt)))
w, b = rs.randn(50 * 5), rs.randn(5)

net = fx.FlatMLP([50, 5], activations="sigmoid", backend="numpy", dtype="float64")
net.set_params(w, b)  # the seed's flat w: weight of input i to output j at w[i + 50 * j]
print("w_len, b_len =", net.layout.w_len, net.layout.b_len)

# The seed's gradient -2 (y - z) f'(s) x at lr 0.1 is the mean-over-outputs MSE gradient at lr 0.5.
hist = net.fit(x, y, epochs=10, batch_size=1, optimizer=fx.SGD(lr=0.5), loss="mse", shuffle=False, progress=False)
ours = hist.batch_loss[999::1000]  # each epoch's last sample, loss computed before its update

print(f"{'epoch':>5}  {'seed':<26}{'flatnet_xp':<26}rel. diff")
for epoch, (theirs, mine) in enumerate(zip(SEED_TABLE, ours, strict=True), 1):
    print(f"{epoch:>5}  {theirs!r:<26}{mine!r:<26}{abs(mine - theirs) / theirs:.1e}")
worst = max(abs(m - t) / t for m, t in zip(ours, SEED_TABLE, strict=True))
assert worst < TOLERANCE, worst
plot_seed_curve(hist.batch_loss, ours).savefig("seed_loss_curve.png", dpi=120)
print("reproduced; loss curve in seed_loss_curve.png")
