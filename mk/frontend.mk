# The terminal's third-party front-end code. Included by the main Makefile.
#
#   make frontend-assets   fetch Lightweight Charts (pinned) from the npm registry into
#                          src/gostream/frontend/static/vendor/ (git-ignored); a no-op
#                          when that version is already there
#
# The tarball is kept in .cache/npm, so a second run downloads nothing. An image build
# should run the same `npm pack` and copy the same file.

LWC_VERSION ?= 5.2.1
LWC_FILE := lightweight-charts.standalone.production.js
LWC_VENDOR := src/gostream/frontend/static/vendor
LWC_STAMP := $(LWC_VENDOR)/.lightweight-charts-$(LWC_VERSION)

.PHONY: frontend-assets

frontend-assets: $(LWC_STAMP) ## fetch the pinned Lightweight Charts from npm into the frontend (once)

$(LWC_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "frontend-assets: 'npm' is required to fetch lightweight-charts $(LWC_VERSION) (apt-get install -y npm)" >&2; exit 1; }
	@mkdir -p .cache/npm $(LWC_VENDOR)
	@test -f .cache/npm/lightweight-charts-$(LWC_VERSION).tgz || \
	  (cd .cache/npm && npm pack --silent lightweight-charts@$(LWC_VERSION) >/dev/null)
	@rm -rf .cache/npm/lightweight-charts-$(LWC_VERSION) && mkdir -p .cache/npm/lightweight-charts-$(LWC_VERSION)
	@tar -xzf .cache/npm/lightweight-charts-$(LWC_VERSION).tgz -C .cache/npm/lightweight-charts-$(LWC_VERSION)
	@cp .cache/npm/lightweight-charts-$(LWC_VERSION)/package/dist/$(LWC_FILE) $(LWC_VENDOR)/$(LWC_FILE)
	@cp .cache/npm/lightweight-charts-$(LWC_VERSION)/package/LICENSE $(LWC_VENDOR)/LICENSE.lightweight-charts
	@rm -f $(LWC_VENDOR)/.lightweight-charts-* && touch $@
	@echo "lightweight-charts $(LWC_VERSION) -> $(LWC_VENDOR)/$(LWC_FILE)"

TEST_PREREQS += frontend-assets
up: frontend-assets
