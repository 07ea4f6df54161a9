# Helm chart tooling and tests. Included by the main Makefile, which defines VENV and PY.
#
#   make chart-tools   build the pinned helm into .cache/bin (once; no-op when present)
#   make test-chart    lint, render and validate the chart offline (tests/charts)
#
# helm comes from the Go module proxy (`go install`), the only way to get it here; the
# Kubernetes JSON schemas come with the kubernetes-validate package (dev extra), so nothing
# is downloaded at test time.

CHART_BIN ?= $(CURDIR)/.cache/bin
HELM_VERSION ?= v3.21.4
HELM ?= $(CHART_BIN)/helm

.PHONY: chart-tools test-chart

# `make test` builds helm first (tests/charts is part of the suite).
TEST_PREREQS += chart-tools

chart-tools:
	@command -v go >/dev/null 2>&1 || { echo "chart-tools: 'go' is required to build helm $(HELM_VERSION) (install Go >= 1.24)" >&2; exit 1; }
	@mkdir -p "$(CHART_BIN)"
	@if [ -x "$(HELM)" ] && go version -m "$(HELM)" 2>/dev/null | grep -Eq "^[[:space:]]*mod[[:space:]]+helm\.sh/helm/v3[[:space:]]+$(HELM_VERSION)([[:space:]]|$$)"; then \
	  echo "helm $(HELM_VERSION) already in $(CHART_BIN)"; \
	else \
	  echo "building helm $(HELM_VERSION) into $(CHART_BIN) (go install, a few minutes the first time)"; \
	  GOBIN="$(CHART_BIN)" GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) || exit 1; \
	fi

test-chart: chart-tools
	$(PY) -m pytest tests/charts
