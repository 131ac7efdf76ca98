#!/usr/bin/env python3
"""How many real Kubernetes manifests `wasmlet validate` accepts, image aside.

Usage: scripts/measure-manifests.py WASMLET DIR COMPONENT

Every `*.yaml` under DIR (for example a copy of the Kubernetes documentation's
content/en/examples) is read document by document; each Pod, and each pod template of a
Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job, is written to a
file of its own with every `image:` set to COMPONENT and checked with `WASMLET validate`. Other
kinds (ConfigMaps, Services, …) are left out, so a pod is judged on its own fields. Prints each
refusal, then the totals, and how many refusals are only about CPU fields.
"""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

WORKLOADS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
             "ReplicationController", "Job"}


def documents(text):
    chunk = []
    for line in text.splitlines():
        if line == "---" or line.startswith("--- "):
            yield "\n".join(chunk)
            chunk = []
        else:
            chunk.append(line)
    yield "\n".join(chunk)


def kind_of(document):
    match = re.search(r"^kind:\s*\"?(\w+)", document, re.M) or re.search(
        r"^\s*\"?kind\"?:\s*\"(\w+)\"", document, re.M)
    return match.group(1) if match else None


def main():
    wasmlet, root, component = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]).resolve()
    accepted, refused, cpu_only = 0, 0, 0
    reasons = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(root.rglob("*.yaml")):
            for index, document in enumerate(documents(path.read_text())):
                if kind_of(document) not in WORKLOADS:
                    continue
                # (Not an image volume's `image: {reference: …}`, which is a map.)
                document = re.sub(r"(\bimage\"?:\s*)(?!\{)\"?[^\s,\"]+\"?", rf'\1"{component}"', document)
                file = Path(scratch) / f"{path.stem}-{index}.yaml"
                file.write_text(document)
                out = subprocess.run([wasmlet, "validate", str(file)], capture_output=True, text=True)
                if out.returncode == 0:
                    accepted += 1
                    continue
                refused += 1
                problems = [l.strip()[2:] for l in out.stderr.splitlines() if l.strip().startswith("- ")]
                fields = sorted({p.split(": ")[0] for p in problems})
                if problems and all(re.search(r"\.cpu\b", p.split(": ")[0]) for p in problems):
                    cpu_only += 1
                for p in problems:
                    key = re.sub(r"\[\d+\]", "[]", p.split(": ")[0])
                    reasons[key] = reasons.get(key, 0) + 1
                print(f"REFUSED {path.relative_to(root)}#{index}: " + "; ".join(problems))
    total = accepted + refused
    print(f"\n{accepted} of {total} pods accepted; {refused} refused, {cpu_only} of them only for CPU fields")
    for key, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {count:3}  {key}")


if __name__ == "__main__":
    main()
