"""The checks of scripts/deploy-check.sh that need a program: each
subcommand prints one summary line, and on failure the problems, one a line,
and exits 1.

  split OUT RENDERED...   sort rendered objects: built-in kinds to
                          OUT/builtin-NAME.yaml (for kubernetes-validate),
                          custom resources to OUT/custom-resources.json (for
                          crd-check.mjs); any other kind has no schema here
  skips RENDERED...       each checkov skip annotation names a check and
                          gives a reason
  policies RENDERED       the policies ConfigMap holds the bundled policies,
                          byte for byte
  drain RENDERED          terminationGracePeriodSeconds covers the preStop
                          pause plus serve's grace_period
  readme README           each README block named after a deploy/ file is
                          a contiguous part of that file
"""

import json
import pathlib
import re
import sys

import yaml

# The custom resources crd-check.mjs has a schema for.
CUSTOM = {
    ("flagger.app/v1beta1", "Canary"),
    ("argoproj.io/v1alpha1", "Rollout"),
    ("argoproj.io/v1alpha1", "AnalysisTemplate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


def objects(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def name(o):
    m = o.get("metadata", {})
    return f"{o.get('kind')} {m.get('namespace', '')}/{m.get('name', '?')}"


def builtin(api_version):
    """Kubernetes' own API groups: the core group, and `*.k8s.io`."""
    group = api_version.rpartition("/")[0]
    return group == "" or group.endswith(".k8s.io") or "." not in group


def split(out, files):
    out = pathlib.Path(out)
    custom, problems, counts = [], [], []
    for f in files:
        stem = pathlib.Path(f).stem
        docs = objects(f)
        core = [o for o in docs if builtin(o["apiVersion"])]
        for o in docs:
            if builtin(o["apiVersion"]):
                continue
            if (o["apiVersion"], o["kind"]) in CUSTOM:
                custom.append({"file": f, "object": o})
            else:
                problems.append(f"{f}: {name(o)} ({o['apiVersion']}) has no schema to validate it against")
        with open(out / f"builtin-{stem}.yaml", "w", encoding="utf-8") as w:
            yaml.safe_dump_all(core, w, sort_keys=False)
        counts.append(f"{stem} {len(core)}+{len(docs) - len(core)}")
    with open(out / "custom-resources.json", "w", encoding="utf-8") as w:
        json.dump(custom, w)
    return problems, f"built-in + custom objects: {', '.join(counts)}"


def skips(files):
    problems, n = [], 0
    for f in files:
        for o in objects(f):
            for key, value in (o.get("metadata", {}).get("annotations") or {}).items():
                if not key.startswith("checkov.io/skip"):
                    continue
                n += 1
                check, _, reason = str(value).partition("=")
                if not re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check) or len(reason.strip()) < 20:
                    problems.append(f"{f}: {name(o)}: `{key}: {value}` needs `CHECK_ID=the reason`")
    return problems, f"{n} skips, each with its reason"


def policies(rendered):
    bundled = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(pathlib.Path("policies").glob("*.yaml"))
        if not p.name.endswith(".test.yaml")
    }
    maps = [
        o
        for o in objects(rendered)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tollgate-policies")
    ]
    if len(maps) != 1:
        return [f"{rendered}: {len(maps)} tollgate-policies ConfigMaps, expected 1"], ""
    data = maps[0].get("data", {})
    problems = [f"policies/{n} is not in deploy/base (cp policies/{n} deploy/base/policies/ and list it in deploy/base/kustomization.yaml)" for n in bundled if n not in data]
    problems += [f"deploy/base/policies/{n} is not a bundled policy (policies/{n})" for n in data if n not in bundled]
    problems += [
        f"deploy/base/policies/{n} differs from policies/{n}: cp policies/{n} deploy/base/policies/"
        for n in data
        if n in bundled and data[n] != bundled[n]
    ]
    return problems, f"{len(data)} policies, the bundled ones byte for byte"


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(text).strip())
    if not m:
        raise ValueError(f"`{text}` is not a duration this check reads")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def drain(rendered):
    docs = objects(rendered)
    config = [o for o in docs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("tollgate-config")]
    deployment = [o for o in docs if o["kind"] == "Deployment" and o["metadata"]["name"] == "tollgate"]
    if len(config) != 1 or len(deployment) != 1:
        return [f"{rendered}: expected one tollgate-config ConfigMap and one tollgate Deployment"], ""
    grace = seconds(yaml.safe_load(config[0]["data"]["tollgate.yaml"]).get("grace_period", "10s"))
    pod = deployment[0]["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "tollgate")
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod.get("terminationGracePeriodSeconds", 30)
    summary = f"terminationGracePeriodSeconds {period} > preStop {pause} s + grace_period {grace:g} s"
    if not period > pause + grace:
        return [f"{rendered}: {summary} does not hold: the kubelet kills requests still draining"], summary
    return [], summary


def readme(path):
    """A fenced block whose nearest non-blank line above links a deploy/
    file is an excerpt of it: its lines must be consecutive lines of the
    file. Blocks of a controller's kind must all be excerpts."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").split("\n")
    problems, found, i = [], [], 0
    while i < len(lines):
        if not lines[i].startswith("```") or lines[i] == "```":
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j] == "```")
        block = lines[start + 1 : end]
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        source = re.search(r"\]\((deploy/[^)\s]+)\)", above)
        text = "\n".join(block) + "\n"
        if source:
            file = pathlib.Path(source.group(1))
            found.append(str(file))
            if not file.is_file():
                problems.append(f"{path}:{start + 1}: names {file}, which does not exist")
            else:
                content = file.read_text(encoding="utf-8").split("\n")
                if not any(content[k : k + len(block)] == block for k in range(len(content) - len(block) + 1)):
                    problems.append(f"{path}:{start + 1}: the block is not a contiguous part of {file} (copy it again from the file)")
        elif kind := re.search(r"^kind: (Canary|Rollout|AnalysisTemplate|ServiceMonitor)$", text, re.M):
            problems.append(f"{path}:{start + 1}: a {kind.group(1)} block not taken from deploy/: name its file above it")
        i = end + 1
    if not found:
        problems.append(f"{path}: no block names a deploy/ file")
    return problems, f"{len(found)} blocks match their files ({', '.join(sorted(set(found)))})"


def main(argv):
    command, args = argv[1], argv[2:]
    try:
        problems, summary = {
            "split": lambda: split(args[0], args[1:]),
            "skips": lambda: skips(args),
            "policies": lambda: policies(args[0]),
            "drain": lambda: drain(args[0]),
            "readme": lambda: readme(args[0]),
        }[command]()
    except FileNotFoundError as e:
        problems, summary = [f"cannot read `{e.filename}` (not rendered?)"], ""
    except yaml.YAMLError as e:
        problems, summary = [f"not YAML: {e}"], ""
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)" if problems else summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
