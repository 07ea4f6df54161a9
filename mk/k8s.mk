# A real Kubernetes control plane for the chart tests (tests/k8s). Included by the main
# Makefile, which defines VENV, PY and apt-ensure.
#
#   make k8s-tools   build etcd, kube-apiserver and kube-controller-manager into .cache/k8s/bin
#                    (once per machine: ~/.cache/gostream/k8s/<key>; a no-op when present)
#   make test-k8s    install, upgrade and uninstall the chart on that control plane
#
# The binaries are built from the Go module proxy through the wrapper modules in k8s-test/
# (see k8s-test/README.md for the versions, the build time and how the caches avoid it).

K8S_BIN ?= $(CURDIR)/.cache/k8s/bin

.PHONY: k8s-tools test-k8s

# `make test` builds them first (tests/k8s is part of the suite).
TEST_PREREQS += k8s-tools

k8s-tools:
	$(call apt-ensure,openssl,)
	@k8s-test/build.sh "$(K8S_BIN)"

test-k8s: k8s-tools chart-tools $(STAMP)
	$(PY) -m pytest tests/k8s
