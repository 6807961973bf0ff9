# ticketflow: every target installs what it needs into .venv first.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Where torch's CPU build comes from; empty uses the configured index (PyTorch's own: https://download.pytorch.org/whl/cpu).
TORCH_INDEX_URL ?=
HOST ?= 127.0.0.1
PORT ?= 8080
IMAGE ?= ticketflow:dev
CONTAINER ?= docker
OVERLAY ?= minikube
DATA ?=
OUT ?=
VERSION ?=
WINDOW_RECORDS ?=
KFP_HOST ?=
CRON ?=
# pip on some machines warns for every package about absent local index folders: noise, not news.
PIP_QUIET := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: help install run predict promote rollback serve drift demo-drift schedule compile manifests image deploy lint format test bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@echo "==> creating $(VENV) and installing pinned requirements (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip $(PIP_QUIET)
	@$(PIP) install --quiet torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(PIP_QUIET)
	@$(PIP) install --quiet -c constraints.txt -r requirements.txt -r requirements-dev.txt $(PIP_QUIET)
	@$(PIP) install --quiet --no-deps -e . $(PIP_QUIET)
	@$(PIP) check
	@touch $@

install: $(VENV)/.installed ## create .venv with the pinned requirements

run: install ## train on the embedded default (kfp.local); DATA=file to use your export
	@$(PY) -m ticketflow.pipelines.cli run $(if $(DATA),--data "$(DATA)")

predict: install ## score a file with the champion: make predict DATA=in.csv OUT=out.csv
	@if [ -z "$(DATA)" ] || [ -z "$(OUT)" ]; then echo "usage: make predict DATA=in.csv OUT=out.csv (both required)" >&2; exit 2; fi
	@$(PY) -m ticketflow.pipelines.cli predict --data "$(DATA)" --out "$(OUT)"

promote: install ## move champion to a version by hand: make promote VERSION=n
	@if [ -z "$(VERSION)" ]; then echo "usage: make promote VERSION=n" >&2; exit 2; fi
	@$(PY) -m ticketflow.pipelines.cli promote --version $(VERSION)

rollback: install ## move champion back to the previous champion
	@$(PY) -m ticketflow.pipelines.cli rollback

serve: install ## serve the champion (KServe V1/V2) on 127.0.0.1:8080 (HOST=, PORT=); trains first if none
	@$(PY) -m ticketflow.pipelines.cli champion >/dev/null 2>&1 || { echo "==> no champion yet: training on the sample first"; $(PY) -m ticketflow.pipelines.cli run; }
	@$(PY) -m ticketflow.serving --http_port $(PORT) --host $(HOST)

drift: install ## one drift check on the embedded default (kfp.local); retrains when drift is found
	@$(PY) -m ticketflow.pipelines.cli drift $(if $(WINDOW_RECORDS),--window-records $(WINDOW_RECORDS))

demo-drift: install ## the monitoring loop end to end: train, serve, replay, detect drift, label, retrain
	@$(PY) -m ticketflow.pipelines.demo_drift

schedule: install ## on a cluster: recurring drift check every 6 h (KFP_HOST=http://… [CRON="0 0 */6 * * *"])
	@if [ -z "$(KFP_HOST)" ]; then echo "usage: make schedule KFP_HOST=http://<kfp api> [CRON='0 0 */6 * * *']" >&2; exit 2; fi
	@$(PY) -m ticketflow.pipelines.schedule --host $(KFP_HOST) $(if $(CRON),--cron "$(CRON)")

compile: install ## write pipelines/training.yaml and pipelines/drift.yaml for the Kubeflow dashboard
	@$(PY) -m ticketflow.pipelines.training
	@$(PY) -m ticketflow.pipelines.drift

manifests: install ## render the GENERATED manifests: base/inference-service.yaml, monitoring/config-maps.yaml
	@$(PY) -m ticketflow.serving.inference_service
	@$(PY) -m ticketflow.monitoring.cluster_manifests

image: ## build the one image (every KFP component + the predictor): make image [IMAGE=…] [CONTAINER=podman]
	$(CONTAINER) build -t $(IMAGE) --build-arg GIT_COMMIT=$$(git rev-parse HEAD) \
	  $(if $(TORCH_INDEX_URL),--build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL)) .

deploy: ## apply a kustomize overlay to the current kubectl context: make deploy [OVERLAY=minikube]
	kubectl apply -k manifests/overlays/$(OVERLAY)

lint: install ## ruff lint and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: install ## ruff format and autofix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: install lint ## install, lint and run the whole test suite
	@$(PY) -m pytest

bench: install ## measure quality and speed (training, serving, drift), write BENCHMARKS.md (≈ 35 min)
	@$(PY) -m benchmarks.bench_training
	@$(PY) -m benchmarks.bench_serving
	@$(PY) -m benchmarks.bench_drift

clean: ## remove the embedded default's state (.ticketflow) and caches
	rm -rf .ticketflow .pytest_cache .ruff_cache local_outputs
