# A real Kubernetes for the chart tests (tests/k8s). Included by the main Makefile, which
# defines VENV, PY and apt-ensure.
#
#   make k8s-tools      build etcd, kube-apiserver, kube-controller-manager, kubelet,
#                       kube-scheduler, kube-proxy, kubectl, CoreDNS, kube-router and pause
#                       (build.sh), Prometheus with Kubernetes discovery (build-prometheus.sh)
#                       and skaffold (build-skaffold.sh), each script with its own cache key,
#                       into .cache/k8s/bin (once per machine: ~/.cache/gostream/k8s/<key>; a
#                       no-op when present)
#   make k8s-node-deps  the node's Debian packages: containerd, the CNI plugins, ipset, iptables
#   make test-k8s       the chart on the control plane alone (install, upgrade, uninstall)
#                       and on a single node (pods Ready, trades through, policies, helm test,
#                       every pod discovered and scraped by Prometheus, `skaffold deploy -p
#                       external-kafka` of skaffold.yaml and `skaffold delete`)
#
# The binaries are built from the Go module proxy through the wrapper modules in k8s-test/
# (see k8s-test/README.md for the versions, the build time and how the caches avoid it).

K8S_BIN ?= $(CURDIR)/.cache/k8s/bin

K8S_NODE_APT_PACKAGES := containerd containernetworking-plugins ipset iptables iproute2

.PHONY: k8s-tools k8s-tools-background k8s-node-deps test-k8s

# `make test` starts the build in the background, niced, instead of waiting for it: tests/k8s
# run last and wait for it (build.sh's machine lock), so on a fresh machine its ~33 CPU-minutes
# of Go overlap the rest of the suite instead of preceding it. A warm machine copies in a second.
K8S_BUILD_LOG := $(CURDIR)/.cache/k8s/build.log
TEST_BACKGROUND += k8s-tools-background
TEST_PREREQS += k8s-node-deps

k8s-tools:
	$(call apt-ensure,openssl,)
	@k8s-test/build.sh "$(K8S_BIN)"
	@k8s-test/build-prometheus.sh "$(K8S_BIN)"
	@k8s-test/build-skaffold.sh "$(K8S_BIN)"

k8s-tools-background:
	$(call apt-ensure,openssl,)
	@mkdir -p "$(dir $(K8S_BUILD_LOG))"
	@echo "k8s-tools: building in the background (log: $(K8S_BUILD_LOG)); tests/k8s wait for it"
	@nice -n 19 bash -c 'k8s-test/build.sh "$$1" && k8s-test/build-prometheus.sh "$$1" && k8s-test/build-skaffold.sh "$$1"' _ "$(K8S_BIN)" \
	  >"$(K8S_BUILD_LOG)" 2>&1 </dev/null &

k8s-node-deps: ## install containerd, the CNI plugins, ipset and iptables for the test node (apt-get, once)
	$(call apt-ensure,$(K8S_NODE_APT_PACKAGES),--no-install-recommends)

test-k8s: k8s-tools k8s-node-deps chart-tools images-base jars $(STAMP)
	$(PY) -m pytest tests/k8s
