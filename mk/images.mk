# Container images: images/<service>/Dockerfile, built with podman. Included by the
# main Makefile, which defines PY.
#
#   make images-deps   install podman, runc and debootstrap with apt-get (once)
#   make images-base   the local base images (debootstrap bookworm + python3) for the
#                      build stages and, pruned of what a Python service never runs, for
#                      the runtime stages; the root filesystem is cached in .cache/images,
#                      and a later run only re-imports what podman's storage lost
#   make images        build the four images on those bases (TAG=dev), print their sizes
#   make test-images   build and run them for real against Kafka and QuestDB (tests/images)
#
# No registry is reachable here, hence the local base; on a machine with one,
# `podman build --build-arg BASE_IMAGE=python:3.11-slim` (the Dockerfiles' default) works.

IMAGES_BASE ?= localhost/gostream-base:bookworm
IMAGES_RUNTIME ?= $(IMAGES_BASE)-runtime
IMAGES_CACHE ?= $(CURDIR)/.cache/images
# runc: the runtime that works here (podman's default crun is not installed);
# debootstrap: the base. containernetworking-plugins and iptables come with podman.
IMAGES_APT_PACKAGES := podman runc debootstrap

.PHONY: images-deps images-base images test-images

# `make test` builds the base first (tests/images builds and runs the images).
TEST_PREREQS += images-deps images-base

images-deps: ## install podman, runc and debootstrap (apt-get, once)
	$(call apt-ensure,$(IMAGES_APT_PACKAGES),--no-install-recommends)

images-base: images-deps ## build the local base images (debootstrap + podman import, cached)
	@images/base.sh "$(IMAGES_BASE)" "$(IMAGES_CACHE)" "$(IMAGES_RUNTIME)"

images: images-base ## build the four service images with podman (TAG=dev)
	@BASE_IMAGE="$(IMAGES_BASE)" RUNTIME_IMAGE="$(IMAGES_RUNTIME)" TAG="$(or $(TAG),dev)" LWC_VERSION="$(LWC_VERSION)" images/build.sh

test-images: images-base venv jars ## build and run the images against real Kafka and QuestDB
	$(PY) -m pytest tests/images
