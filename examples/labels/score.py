# Scores a propensity model against ampsim's ground truth: the oracle AUC of p_convert (the
# probability each outcome was drawn with) is the ceiling any model of the same trials can reach.
import sys, pyarrow.parquet as pq, pyarrow.compute as pc

def auc(scores, labels):
    pairs = sorted(zip(scores, labels))
    pos = sum(labels); neg = len(labels) - pos
    rank_sum, i = 0.0, 0
    while i < len(pairs):                      # average ranks over ties
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += sum(l for _, l in pairs[i:j]) * (i + j + 1) / 2
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)

t = pq.read_table(sys.argv[1])
trials = t.filter(pc.is_valid(t["p_convert"])).to_pydict()
y = [int(c) for c in trials["trial_converts"]]
print(f"{len(y)} decided trials, {sum(y)} convert")
print(f"oracle AUC (p_convert):             {auc(trials['p_convert'], y):.3f}")
print(f"milestones at decision only:        {auc(trials['milestones_at_decision'], y):.3f}")
print(f"latent intent only:                 {auc(trials['intent'], y):.3f}")
# Attribution: the true effect of each first touch on intent, against what arrived.
by = {}
for src, mean, x in zip(t["first_touch_source"].to_pylist(), t["intent_mean"].to_pylist(), t["intent"].to_pylist()):
    n, s, m = by.get(src, (0, 0.0, 0.0)); by[src] = (n + 1, s + x, m + mean)
for src, (n, s, m) in sorted(by.items(), key=lambda kv: -kv[1][2] / kv[1][0])[:4]:
    print(f"{src:12} users {n:7}  true mean intent {m / n:+.2f}  sample {s / n:+.2f}")
