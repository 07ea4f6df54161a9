# Monitoring: the local Prometheus and the alert/dashboard checks. Included by the main
# Makefile, which defines PY and the apt-ensure macro.
#
#   make monitoring-deps   install Debian's prometheus (prometheus + promtool) with apt-get, once
#   make test-monitoring   promtool check/test rules, and a real Prometheus scraping the real
#                          pipeline (tests/monitoring)
#
# The rules live in charts/gostream/files/prometheus-rules.yaml: the chart ships them as a
# PrometheusRule, `make up` loads them into the local Prometheus (http://127.0.0.1:9090).

.PHONY: monitoring-deps test-monitoring

TEST_PREREQS += monitoring-deps
up: monitoring-deps

monitoring-deps: ## install prometheus and promtool (apt-get, once)
	$(call apt-ensure,prometheus,--no-install-recommends)

test-monitoring: monitoring-deps venv jars ## promtool rule tests and a live Prometheus against the pipeline
	$(PY) -m pytest tests/monitoring
