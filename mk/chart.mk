# Helm chart tooling and tests. Included by the main Makefile, which defines VENV and PY.
#
#   make chart-tools   build the pinned helm, helm-values-schema-json and helm-docs into
#                      .cache/bin (once; a no-op when the pinned versions are there)
#   make chart-docs    regenerate charts/gostream/values.schema.json and the values table of
#                      charts/gostream/README.md from values.yaml and its comments
#   make test-chart    lint, render and validate the chart offline (tests/charts)
#
# Everything comes from the Go module proxy, the only way to get it here: helm with `go install`,
# the two chart-doc tools from the wrapper module mk/chart-tools (go.mod/go.sum pin them with
# hashes; `go install m@v` cannot be used for helm-values-schema-json, the proxy refuses the
# version list it asks for). Cold build of the two: ~2.5 min on 2 cores (helm-docs links helm's
# chart loader), seconds with Go's build cache warm. The Kubernetes JSON schemas come with the
# kubernetes-validate package (dev extra), so nothing is downloaded at test time.

CHART_BIN ?= $(CURDIR)/.cache/bin
HELM_VERSION ?= v3.21.4
HELM ?= $(CHART_BIN)/helm
CHART_DIR := charts/gostream
# The versions in mk/chart-tools/go.mod (checked against the built binaries' build info).
SCHEMA_TOOL_VERSION := $(shell awk '$$1=="github.com/losisin/helm-values-schema-json/v2" && NF>1{print $$2}' mk/chart-tools/go.mod)
HELM_DOCS_VERSION := $(shell awk '$$1=="github.com/norwoodj/helm-docs" && NF>1{print $$2}' mk/chart-tools/go.mod)
# How values.yaml becomes values.schema.json (tests/charts/test_chart_docs.py runs the same).
SCHEMA_FLAGS := --draft 7 --no-additional-properties --use-helm-docs --bundle --bundle-without-id \
  --indent 2 --schema-root.title "gostream chart values"

.PHONY: chart-tools test-chart chart-docs

# `make test` builds the tools first (tests/charts is part of the suite).
TEST_PREREQS += chart-tools

# built <binary> <module> <version>: true when the binary exists and was built from that version
built = [ -x "$(CHART_BIN)/$(1)" ] && go version -m "$(CHART_BIN)/$(1)" 2>/dev/null | grep -Eq "^[[:space:]]*(mod|dep)[[:space:]]+$(2)[[:space:]]+$(3)([[:space:]]|$$)"

chart-tools: ## build the pinned helm, helm-values-schema-json and helm-docs into .cache/bin
	@command -v go >/dev/null 2>&1 || { echo "chart-tools: 'go' is required to build helm $(HELM_VERSION) and the chart-doc tools (install Go >= 1.24)" >&2; exit 1; }
	@mkdir -p "$(CHART_BIN)"
	@if $(call built,helm,helm\.sh/helm/v3,$(HELM_VERSION)); then \
	  echo "helm $(HELM_VERSION) already in $(CHART_BIN)"; \
	else \
	  echo "building helm $(HELM_VERSION) into $(CHART_BIN) (go install, a few minutes the first time)"; \
	  GOBIN="$(CHART_BIN)" GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION) || exit 1; \
	fi
	@if $(call built,helm-values-schema-json,github\.com/losisin/helm-values-schema-json/v2,$(SCHEMA_TOOL_VERSION)) \
	   && $(call built,helm-docs,github\.com/norwoodj/helm-docs,$(HELM_DOCS_VERSION)); then \
	  echo "helm-values-schema-json $(SCHEMA_TOOL_VERSION) and helm-docs $(HELM_DOCS_VERSION) already in $(CHART_BIN)"; \
	else \
	  echo "building helm-values-schema-json $(SCHEMA_TOOL_VERSION) and helm-docs $(HELM_DOCS_VERSION) into $(CHART_BIN) (~2.5 min the first time)"; \
	  cd mk/chart-tools && go build -mod=readonly -trimpath -o "$(CHART_BIN)/" \
	    github.com/losisin/helm-values-schema-json/v2 github.com/norwoodj/helm-docs/cmd/helm-docs || exit 1; \
	fi

chart-docs: chart-tools ## regenerate the chart's values.schema.json and README values table from values.yaml
	cd $(CHART_DIR) && "$(CHART_BIN)/helm-values-schema-json" $(SCHEMA_FLAGS) -f values.yaml -o values.schema.json
	"$(CHART_BIN)/helm-docs" --chart-search-root $(CHART_DIR) --skip-version-footer --sort-values-order file

test-chart: chart-tools ## lint, render and validate the chart offline (tests/charts)
	$(PY) -m pytest tests/charts
