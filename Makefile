# ticketflow: every target installs what it needs into .venv first.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The installed command (pyproject's [project.scripts]).
TICKETFLOW := $(VENV)/bin/ticketflow
# Where torch's CPU build comes from; empty uses the configured index (PyTorch's own: https://download.pytorch.org/whl/cpu).
TORCH_INDEX_URL ?=
HOST ?= 127.0.0.1
PORT ?= 8080
# The container engine: Docker when its daemon answers, else Podman (through ../shared/tools/podman.sh where a
# machine needs that wrapper: see ../shared/notes/containers.md). Evaluated only by the targets that use it.
CONTAINER ?= $(shell docker info >/dev/null 2>&1 && echo docker || \
  { test -x ../shared/tools/podman.sh && echo ../shared/tools/podman.sh; } || echo podman)
# make smoke-containers: the image as the engine lists it (Podman lists a local build as localhost/<name>:<tag>),
# the Dockerfile's base (empty: python:3.11-slim when it can be had, else one built with debootstrap), the CA
# bundle pip needs inside the build (behind a TLS-intercepting proxy; pip's own PIP_CERT by default), a folder with
# torch's CPU wheel where PyTorch's index is out of reach (pip's own PIP_FIND_LINKS by default); SKIP_BUILD=1
# reuses an image the engine already lists.
SMOKE_IMAGE ?= localhost/ticketflow:dev
BASE_IMAGE ?=
PIP_CERT_FILE ?= $(PIP_CERT)
TORCH_WHEEL_DIR ?= $(PIP_FIND_LINKS)
SKIP_BUILD ?=
OVERLAY ?= minikube
OVERLAY_DIR = manifests/overlays/$(OVERLAY)
# The one image every pipeline step and every container of ours runs. Its one home is the overlay's `images:`
# entry (ticketflow.pipelines.image writes it; awk reads it here, so `make image` needs no .venv); IMAGE=… on any of
# image, compile, deploy retags it: the overlay's entry is rewritten and the pipelines recompiled, together, e.g.
# IMAGE=ticketflow:$(git rev-parse --short HEAD). Podman names a local build localhost/<name>:<tag>: a cluster
# that takes images from podman knows it by that name.
OVERLAY_IMAGE := $(shell awk '/^images:/ {on = 1; next} /^[^ \t\#-]/ {on = 0} \
  on && $$1 == "newName:" {name = $$2} on && $$1 == "newTag:" {tag = ":" $$2} on && $$1 == "digest:" {tag = "@" $$2} \
  END {if (name != "") print name tag}' $(OVERLAY_DIR)/kustomization.yaml 2>/dev/null)
IMAGE ?= $(OVERLAY_IMAGE)
# Recompiles (which rewrites the overlay's entry) when IMAGE is not the overlay's image.
RETAG = $(if $(filter-out $(OVERLAY_IMAGE),$(IMAGE)),@+$(MAKE) --no-print-directory compile IMAGE="$(IMAGE)")
KUBECTL ?= kubectl
# How long `make deploy` waits for the cluster to answer before it gives up (kubectl may ask twice).
CLUSTER_TIMEOUT ?= 5s
DATA ?=
OUT ?=
VERSION ?=
WINDOW_RECORDS ?=
# make submit / make schedule: the cluster's KFP API (e.g. http://localhost:8080 through
# `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`), the namespace of the runs (a multi-user Kubeflow:
# the profile's; empty: kubeflow, which single-user KFP ignores), a bearer token (KFP_TOKEN, handed over on standard
# input, never on a command line that `ps` shows; or KFP_TOKEN_FILE) and the service account of the runs' pods
# (empty: KFP's default).
KFP_HOST ?=
KFP_NAMESPACE ?=
KFP_TOKEN ?=
KFP_TOKEN_FILE ?=
KFP_SERVICE_ACCOUNT ?=
export KFP_TOKEN
KFP_ARGS = --host "$(KFP_HOST)" $(if $(KFP_NAMESPACE),--namespace "$(KFP_NAMESPACE)") \
  $(if $(KFP_SERVICE_ACCOUNT),--service-account "$(KFP_SERVICE_ACCOUNT)") \
  $(if $(KFP_TOKEN_FILE),--token-file "$(KFP_TOKEN_FILE)",$(if $(KFP_TOKEN),--token-file -))
KFP_STDIN = $(if $(KFP_TOKEN_FILE),,$(if $(KFP_TOKEN),printf '%s' "$$KFP_TOKEN" | ))
KFP_OPTIONS = [KFP_NAMESPACE=…] [KFP_TOKEN=… | KFP_TOKEN_FILE=…] [KFP_SERVICE_ACCOUNT=…]
CRON ?=
# make reset deletes the embedded default's state folder; FORCE=1 skips the question.
STATE_DIR := .ticketflow
FORCE ?=
# The product's code (what bandit checks; tests and benchmarks are not shipped).
CODE := components monitoring serving pipelines
# make lock: uv (from requirements-dev.txt) resolves for Linux x86_64 / CPython 3.11 whatever machine runs it.
UV ?= $(VENV)/bin/uv
LOCK_FOR := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
UPGRADE ?=
# pip on some machines warns for every package about absent local index folders: noise, not news. pip's own exit
# status still counts (pipefail).
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: help install run predict promote rollback serve drift demo-drift submit schedule compile manifests image \
	smoke-containers deploy lint bandit format test test-unit test-integration audit lock bench clean reset

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Plain pip, from the locks: torch's CPU build first (the lock pins torch==2.13.0 but none of its CUDA packages),
# then the locked tree, then the project itself without dependencies, built by the locked setuptools.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "==> creating $(VENV) and installing the locked requirements (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip $(PIP_QUIET)
	@$(PIP) install --quiet torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(PIP_QUIET)
	@$(PIP) install --quiet -r requirements.txt -r requirements-dev.txt $(PIP_QUIET)
	@# setuptools warns, in a box, that an editable install can be shadowed by same-named folders: we have none.
	@PYTHONWARNINGS=ignore $(PIP) install --quiet --no-deps --no-build-isolation -e . $(PIP_QUIET)
	@$(PIP) check
	@touch $@

install: $(VENV)/.installed ## create .venv from the locks (requirements.txt, requirements-dev.txt)

run: install ## train on the embedded default (kfp.local); DATA=file to use your export
	@$(TICKETFLOW) run $(if $(DATA),--data "$(DATA)")

predict: install ## score a file with the champion: make predict DATA=in.csv OUT=out.csv
	@if [ -z "$(DATA)" ] || [ -z "$(OUT)" ]; then echo "usage: make predict DATA=in.csv OUT=out.csv (both required)" >&2; exit 2; fi
	@$(TICKETFLOW) predict --data "$(DATA)" --out "$(OUT)"

promote: install ## move champion to a version by hand: make promote VERSION=n
	@if [ -z "$(VERSION)" ]; then echo "usage: make promote VERSION=n" >&2; exit 2; fi
	@$(TICKETFLOW) promote --version $(VERSION)

rollback: install ## move champion back to the previous champion
	@$(TICKETFLOW) rollback

serve: install ## serve the champion (KServe V1/V2) on 127.0.0.1:8080 (HOST=, PORT=); trains first if none
	@$(TICKETFLOW) champion >/dev/null 2>&1 || { echo "==> no champion yet: training on the sample first"; $(TICKETFLOW) run; }
	@$(TICKETFLOW) serve --host $(HOST) --port $(PORT)

drift: install ## one drift check on the embedded default (kfp.local); retrains when drift is found
	@$(TICKETFLOW) drift $(if $(WINDOW_RECORDS),--window-records $(WINDOW_RECORDS))

demo-drift: install ## the monitoring loop end to end: train, serve, replay, detect drift, label, retrain
	@$(PY) -m ticketflow.pipelines.demo_drift

submit: install ## on a cluster: one training run of pipelines/training.yaml (KFP_HOST=http://… DATA=minio://…)
	@if [ -z "$(KFP_HOST)" ] || [ -z "$(DATA)" ]; then \
	  echo "usage: make submit KFP_HOST=http://<kfp api> DATA=minio://mlpipeline/tickets/export.csv $(KFP_OPTIONS)" >&2; \
	  exit 2; fi
	@$(KFP_STDIN)$(PY) -m ticketflow.pipelines.submit $(KFP_ARGS) --data "$(DATA)"

schedule: install ## on a cluster: recurring drift check every 6 h, replacing the last (KFP_HOST=http://… [CRON=…])
	@if [ -z "$(KFP_HOST)" ]; then \
	  echo "usage: make schedule KFP_HOST=http://<kfp api> [CRON='0 0 */6 * * *'] $(KFP_OPTIONS)" >&2; exit 2; fi
	@$(KFP_STDIN)$(PY) -m ticketflow.pipelines.schedule $(KFP_ARGS) $(if $(CRON),--cron "$(CRON)")

compile: install ## write pipelines/training.yaml and drift.yaml naming IMAGE (default: the overlay's; IMAGE=… retags)
	@$(PY) -m ticketflow.pipelines.image --overlay $(OVERLAY_DIR) set "$(IMAGE)"
	@TICKETFLOW_IMAGE="$(IMAGE)" $(PY) -m ticketflow.pipelines.training
	@TICKETFLOW_IMAGE="$(IMAGE)" $(PY) -m ticketflow.pipelines.drift

manifests: install ## render the GENERATED manifests: base/inference-service.yaml, monitoring/config-maps.yaml
	@$(PY) -m ticketflow.serving.inference_service
	@$(PY) -m ticketflow.monitoring.cluster_manifests

image: ## build the one image (every KFP component + the predictor): make image [IMAGE=…] [CONTAINER=podman]
	@test -n "$(IMAGE)" || { echo "make image: $(OVERLAY_DIR)/kustomization.yaml names no image: IMAGE=…" >&2; exit 2; }
	$(CONTAINER) build -t $(IMAGE) --build-arg GIT_COMMIT=$$(git rev-parse HEAD) \
	  $(if $(TORCH_INDEX_URL),--build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL)) .
	$(RETAG)

smoke-containers: install ## the whole loop, each step and the predictor in a container of the image
	@$(PY) -m ticketflow.pipelines.smoke_containers --engine "$(CONTAINER)" --image "$(SMOKE_IMAGE)" \
	  --base-image "$(BASE_IMAGE)" --pip-cert "$(PIP_CERT_FILE)" --torch-wheel-dir "$(TORCH_WHEEL_DIR)" \
	  $(if $(SKIP_BUILD),--skip-build)

deploy: ## apply a kustomize overlay to the current kubectl context: make deploy [OVERLAY=minikube] [IMAGE=…]
	@command -v $(KUBECTL) >/dev/null || { echo "make deploy: $(KUBECTL) is not installed" >&2; exit 2; }
	@why=$$($(KUBECTL) get --raw /version --request-timeout=$(CLUSTER_TIMEOUT) 2>&1 >/dev/null) || { \
	  echo "make deploy: no Kubernetes cluster answers at kubectl's context" \
	    "'$$($(KUBECTL) config current-context 2>/dev/null || echo '(none set)')' within $(CLUSTER_TIMEOUT):" \
	    "start it (minikube start) or choose one (kubectl config use-context NAME)." >&2; \
	  echo "  kubectl: $${why##*$$'\n'}" >&2; exit 1; }
	$(RETAG)
	$(KUBECTL) apply -k $(OVERLAY_DIR)

lint: install ## ruff lint and format check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

bandit: install ## security lint of the product's code (settings: [tool.bandit] in pyproject.toml)
	@$(VENV)/bin/bandit -c pyproject.toml -q -r $(CODE)

format: install ## ruff format and autofix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: install lint bandit ## install, lint (ruff, bandit) and run the whole test suite
	@$(PY) -m pytest

test-unit: install ## the unit tier only (tests/unit: seconds, no stores or servers)
	@$(PY) -m pytest -m unit

test-integration: install ## the integration tier only (tests/integration: kfp.local, the server, real stores)
	@$(PY) -m pytest -m integration

audit: bandit ## supply chain: bandit, then pip-audit of both locks against PyPI's advisories (needs the network)
	@$(VENV)/bin/pip-audit --progress-spinner off --strict --no-deps --disable-pip -r requirements.txt -r requirements-dev.txt

# uv writes each lock with a header naming its command; sed adds lines under it that say how to install the lock.
DEV_EXTRA := import tomllib; \
	print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"], sep="\n")

lock: ## regenerate the locks from pyproject.toml with uv (needs PyPI); UPGRADE=1 takes the newest allowed
	@command -v $(UV) >/dev/null || { echo "make lock needs uv (make install brings it) or UV=/path/to/uv" >&2; exit 2; }
	$(UV) pip compile pyproject.toml $(LOCK_FOR) --excludes lock-excludes.txt $(if $(UPGRADE),--upgrade) \
	  -o requirements.txt
	@sed -i -e '2a # make lock ran the command above: the runtime tree of pyproject.toml, Linux x86_64 / CPython 3.11.' \
	  -e '2a # Install it with plain pip, torch (CPU build) first: the lock holds torch==2.13.0 but none of the' \
	  -e '2a # nvidia-*, cuda-* and triton packages of its PyPI build (lock-excludes.txt):' \
	  -e '2a #    pip install torch==2.13.0   # elsewhere add --index-url https://download.pytorch.org/whl/cpu' \
	  -e '2a #    pip install -r requirements.txt && pip install --no-deps . && pip check' requirements.txt
	$(PYTHON_BIN) -c '$(DEV_EXTRA)' \
	  | $(UV) pip compile - $(LOCK_FOR) -c requirements.txt $(if $(UPGRADE),--upgrade) -o requirements-dev.txt
	@sed -i -e '2a # make lock ran the command above on the dev extra of pyproject.toml (stdin "-"), constrained by the' \
	  -e '2a # runtime lock, for Linux x86_64 / CPython 3.11. Install it beside that lock (after torch, as there):' \
	  -e '2a #    pip install -r requirements.txt -r requirements-dev.txt' requirements-dev.txt

bench: install ## measure quality and speed (training, quality, serving, encoding, drift, log), write BENCHMARKS.md (≈ 1 h 20 min)
	@$(PY) -m benchmarks.bench_training
	@$(PY) -m benchmarks.bench_quality
	@$(PY) -m benchmarks.bench_serving
	@$(PY) -m benchmarks.bench_encoding
	@$(PY) -m benchmarks.bench_drift
	@$(PY) -m benchmarks.bench_store

clean: ## remove build outputs and caches (not the state: see make reset)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache local_outputs
	find . -path './.*' -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

reset: ## delete the state folder (.ticketflow: models, runs, vectors, logs); asks first, FORCE=1 does not
	@if [ ! -e "$(STATE_DIR)" ]; then echo "nothing to reset: no $(STATE_DIR)"; exit 0; fi; \
	if [ "$(FORCE)" != 1 ]; then \
	  if [ ! -t 0 ]; then echo "make reset: no terminal to ask; FORCE=1 deletes $(STATE_DIR) at once" >&2; exit 1; fi; \
	  read -r -p "delete $(STATE_DIR) (models, MLflow runs, vectors, prediction and feedback logs)? [y/N] " answer; \
	  case "$$answer" in [yY]|[yY][eE][sS]) ;; *) echo "kept $(STATE_DIR)"; exit 0;; esac; \
	fi; \
	rm -rf -- "$(STATE_DIR)"; \
	echo "deleted $(STATE_DIR)"
