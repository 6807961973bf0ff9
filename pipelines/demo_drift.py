"""`make demo-drift`: the monitoring loop end to end on the embedded default, in about two minutes.

1. Train on the bundled sample *without* the "HR Support" queue, and serve the champion over HTTP.
2. Replay fresh in-distribution tickets (new tickets from the same generator): no drift.
3. Replay HR tickets the model never saw: agents label part of them through `/v1/feedback`.
4. Run the drift check: drift is detected and attributed to the queues the HR tickets landed in. The
   same run retrains on the old data plus the corrections, and the quality gate decides.
5. The server picks up the new champion; the demo reports the new model's accuracy on the new topic.
The last line of stdout is one JSON object with what happened.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from ticketflow.components.config import TicketflowConfig, environment_with
from ticketflow.pipelines.local_services import free_port

ROOT = Path(__file__).resolve().parents[1]
NEW_TOPIC = "HR Support"
MODEL = TicketflowConfig().registered_model_name


def step(message: str) -> None:
    """A progress line."""
    print(f"==> {message}", flush=True)


def generated_tickets(seeds: range) -> list[dict[str, str]]:
    """Fresh tickets from the sample's own generator (same templates, other seeds)."""
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "data" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [row for seed in seeds for row in module.build_rows(seed)]


def cli(home: Path, *args: str) -> dict:
    """Runs the project's CLI and returns its last JSON line (its task logs stay in the run's tasks.log)."""
    proc = subprocess.run(  # nosec B603  # our own CLI: sys.executable and a fixed module
        [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        # The CLI's error names the task log and quotes the failed task's last lines.
        raise SystemExit(f"error: {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def start_server(home: Path, port: int, token: str) -> subprocess.Popen:
    """Starts the predictor and waits until it is ready."""
    env = environment_with(api_token=token)  # not on the command line, where `ps` would show it
    log = (home / "server.log").open("w")
    command = [sys.executable, "-m", "ticketflow.pipelines.cli", "--home", str(home), "serve", "--port", str(port)]
    # No periodic reload: step 5 asks for it, so the demo shows exactly when the new champion is picked up.
    proc = subprocess.Popen(  # nosec B603  # our own CLI: sys.executable and a fixed module
        [*command, "--reload-interval", "0"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited; see {home / 'server.log'}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("error: the server did not become ready in 3 minutes")


def send(url: str, tickets: list[dict[str, str]], request_id: str) -> list[dict]:
    """Sends tickets in batches of 32 (V1); returns the answers."""
    answers = []
    for start in range(0, len(tickets), 32):
        batch = [{k: t[k] for k in ("subject", "body", "tags")} for t in tickets[start : start + 32]]
        response = requests.post(
            f"{url}/v1/models/{MODEL}:predict",
            json={"instances": batch},
            timeout=120,
            headers={"x-request-id": f"{request_id}-{start}"},
        )
        response.raise_for_status()
        answers += response.json()["predictions"]
    return answers


def main() -> int:
    """Runs the demo."""
    home = ROOT / TicketflowConfig().home / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    sample = list(csv.DictReader((ROOT / "data" / "sample_tickets.csv").open(encoding="utf-8")))
    train_path = home / "without_hr.csv"
    with train_path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(sample[0]))
        writer.writeheader()
        writer.writerows(r for r in sample if r["category"] != NEW_TOPIC and None not in r)
    step(f"1/5 training without the {NEW_TOPIC!r} queue (kfp.local)")
    trained = cli(home, "run", "--data", str(train_path))
    print(f"    champion v{trained['model_version']}: category macro-F1 {trained['metrics']['category']['macro_f1']}")

    fresh = [t for t in generated_tickets(range(100, 104))]
    usual = [t for t in fresh if t["category"] != NEW_TOPIC][:150]
    novel = [t for t in fresh if t["category"] == NEW_TOPIC]
    labelled, held_out = novel[:40], novel[40:]
    token, port = "demo-token", free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"2/5 serving on {url}; replaying {len(usual)} in-distribution tickets")
    server = start_server(home, port, token)
    try:
        send(url, usual, "usual")
        calm = cli(home, "drift", "--window-records", str(len(usual)))
        print(f"    drift detected: {calm['drift_detected']} ({calm['reason']})")

        step(f"3/5 replaying {len(novel)} {NEW_TOPIC!r} tickets; agents label {len(labelled)} of them")
        answers = send(url, novel, "shifted")
        routed = {a["labels"]["category"]["label"] for a in answers}
        print(f"    the model routed them to: {sorted(routed)}")
        for ticket, answer in zip(labelled, answers, strict=False):
            requests.post(
                f"{url}/v1/feedback",
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
                json={"ticket_id": answer["id"], "labels": {"category": NEW_TOPIC, "priority": ticket["priority"]}},
            ).raise_for_status()

        step("4/5 drift check on the shifted window (retrains when drift is found)")
        shifted = cli(home, "drift", "--window-records", str(len(novel)))
        queues = [q["queue"] for q in shifted["queues"] if q["drifted"]]
        print(f"    drift detected: {shifted['drift_detected']} ({shifted['reason']})")
        print(
            f"    retrained: {shifted['retrained']}; champion changed: {shifted['champion_changed']} "
            f"(now v{shifted['champion_version']})"
        )

        step("5/5 the server picks up the new champion; accuracy on the new topic")
        reload = requests.post(
            f"{url}/v1/models/{MODEL}/reload", headers={"Authorization": f"Bearer {token}"}, timeout=300
        ).json()
        after = send(url, held_out, "after")
        accuracy = sum(a["labels"]["category"]["label"] == NEW_TOPIC for a in after) / max(len(after), 1)
        print(
            f"    serving v{reload.get('version')}; {NEW_TOPIC!r} accuracy on {len(after)} unseen tickets: "
            f"{accuracy:.2f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        json.dumps(
            {
                "in_distribution": {"drift_detected": calm["drift_detected"], "reason": calm["reason"]},
                "shifted": {
                    "drift_detected": shifted["drift_detected"],
                    "drifted_queues": queues,
                    "scores": {k: v["score"] for k, v in shifted["scores"].items()},
                    "retrained": shifted["retrained"],
                    "champion_changed": shifted["champion_changed"],
                },
                "new_topic_accuracy": round(accuracy, 4),
                "serving_version": reload.get("version"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
