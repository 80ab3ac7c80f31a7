import json, subprocess, sys, statistics
GROUPS = ["conv.", "maxpool.", "avgpool.", "gemm.", "train."]
bins = {"before": "/tmp/before-cli/gpubackprop.dll", "after": "/tmp/after-cli/gpubackprop.dll"}
res = {k: {} for k in bins}
out = open(sys.argv[1], "w")
for rnd in range(3):
    for g in GROUPS:
        order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
        for k in order:
            p = subprocess.run(["dotnet", bins[k], "bench", "--device", "cpu", "--json", "--only", g, "--reps", "20"], capture_output=True, text=True, check=True)
            for line in p.stdout.splitlines():
                if line.startswith("{") and '"name"' in line:
                    r = json.loads(line)
                    r["build"] = k; r["round"] = rnd
                    out.write(json.dumps(r) + "\n"); out.flush()
                    res[k].setdefault(r["name"], []).append(r["ms"])
print("| row | before ms (median of 3) | after ms (median of 3) | after/before speed |")
print("|---|---|---|---|")
for name in res["before"]:
    b = statistics.median(res["before"][name]); a = statistics.median(res["after"][name])
    print(f"| {name} | {b:.3f} | {a:.3f} | {b/a:.2f}x |")
